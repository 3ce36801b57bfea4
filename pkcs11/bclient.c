/* tokenkit: finding and calling tokenkitd (bclient.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "bclient.h"
#include "clock.h"
#include "env.h"

int
tk_p11_broker_path(char *buf, size_t cap)
{
	const char *p = tk_env("TOKENKIT_BROKER_SOCKET");
	const char *rt = tk_env("XDG_RUNTIME_DIR");
	int n;

	if (p != NULL && p[0] == '/')
		n = snprintf(buf, cap, "%s", p);
	else if (rt != NULL && rt[0] == '/')
		n = snprintf(buf, cap, "%s/tokenkit/broker.sock", rt);
	else
		n = snprintf(buf, cap, "/run/user/%u/tokenkit/broker.sock", (unsigned)getuid());
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int
tk_p11_broker_system_path(char *buf, size_t cap)
{
	const char *p = tk_env("TOKENKIT_BROKER_SYSTEM_SOCKET");
	int n = snprintf(buf, cap, "%s", p != NULL && p[0] == '/' ? p : BP_SYSTEM_SOCKET);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int
tk_p11_broker_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	int fd, r;

	if (path[0] == '\0' || strlen(path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0 && errno == EINPROGRESS) {
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		int err = 0;
		socklen_t el = sizeof(err);
		if (poll(&pfd, 1, BP_CONNECT_MS) == 1 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
			r = 0;
	}
	/* a broker of our own uid (or root's system instance), nobody else's */
	if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 &&
	    (cred.uid == getuid() || cred.uid == 0))
		return fd;
	if (r == 0)
		tk_log_warn("broker: the socket %s belongs to uid %u: not used", path,
		            (unsigned)cred.uid);
	close(fd);
	return -1;
}

int
tk_p11_broker_choose(char *chosen, size_t cap)
{
	char user[sizeof(((struct sockaddr_un *)0)->sun_path)], sys[sizeof(user)];
	const char *pick = user;
	int fd;

	if (cap > 0)
		chosen[0] = '\0';
	if (tk_p11_broker_path(user, sizeof(user)) < 0)
		return -1;
	fd = tk_p11_broker_connect(user);
	if (fd < 0 && tk_env("TOKENKIT_BROKER_SOCKET") == NULL &&
	    tk_p11_broker_system_path(sys, sizeof(sys)) == 0) {
		fd = tk_p11_broker_connect(sys);
		if (fd >= 0)
			pick = sys;
	}
	if (snprintf(chosen, cap, "%s", pick) >= (int)cap) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (pick == sys)
		tk_log_info("broker: no broker of this user: the system broker at %s", sys);
	return fd;
}

int
tk_p11_broker_timeout_ms(void)
{
	const char *v = tk_env("TOKENKIT_BROKER_TIMEOUT_MS");
	long t = v != NULL ? strtol(v, NULL, 10) : 0;

	return t >= P11R_TIMEOUT_MIN_MS && t <= P11R_TIMEOUT_MAX_MS ? (int)t : P11R_TIMEOUT_MS;
}

int
tk_p11_broker_wanted(void)
{
	const char *v = tk_env("TOKENKIT_BROKER");

	if (v != NULL && (strcmp(v, "off") == 0 || strcmp(v, "0") == 0))
		return -1;
	if (v != NULL && (strcmp(v, "on") == 0 || strcmp(v, "1") == 0))
		return 1;
	return 0;
}

int
bp_call_sync(int fd, struct bp_rbuf *rb, uint32_t fn, uint64_t id, struct bp_w *args,
             int64_t deadline, struct bp_msg *m, uint8_t **in)
{
	uint8_t *buf = NULL;
	size_t len;
	int64_t start;

	*in = NULL;
	memset(m, 0, sizeof(*m));
	if (!bp_encode_request(fn, id, args, &buf, &len)) {
		errno = ENOMEM;
		return -1;
	}
	/* (a request may carry a PIN: a VERIFY of the tool's, BP_CARD_IO) */
	if (bp_write_all(fd, buf, len, deadline) < 0) {
		tk_freezero(buf, len);
		return -1;
	}
	tk_freezero(buf, len);
	start = tk_now_ms();
	for (;;) {
		if (bp_read_msg(fd, rb, in, &len, deadline) < 0)
			return -1;
		if (bp_decode(*in, len, false, m) != NULL || m->id != id) {
			bp_msg_free(m);
			free(*in);
			*in = NULL;
			errno = EPROTO;
			return -1;
		}
		if (m->rv != BP_RV_STILL)
			return 0;
		/* the broker waits on a person: the call's own timeout again,
		 * up to BP_STILL_MAX_MS from its start (bproto.h) */
		if (tk_now_ms() + tk_p11_broker_timeout_ms() > deadline)
			deadline = tk_now_ms() + tk_p11_broker_timeout_ms();
		if (deadline > start + BP_STILL_MAX_MS)
			deadline = start + BP_STILL_MAX_MS;
		bp_msg_free(m);
		free(*in);
		*in = NULL;
	}
}
