/* tokenkit virtual card: the control channel (see control.h). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <tokenkit/log.h>

#include "clock.h"
#include "control.h"

#define READ_TIMEOUT_MS 1000
#define REPLY_TIMEOUT_MS 3000

static int
fill_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -1;
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

int
tk_vc_control_listen(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (fill_addr(&sa, path) != 0) {
		tk_log_error("control path too long: %s", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	(void)unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
		tk_log_error("control socket %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	(void)chmod(path, 0600);
	return fd;
}

int
tk_vc_control_read_line(int fd, char *line, size_t cap)
{
	size_t len = 0;
	int64_t end = tk_now_ms() + READ_TIMEOUT_MS;

	if (cap == 0)
		return -1;
	line[0] = '\0';
	while (len + 1 < cap) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = end - tk_now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return -1;
		n = recv(fd, line + len, cap - 1 - len, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		line[len] = '\0';
		if (memchr(line, '\n', len) != NULL)
			break;
	}
	line[len] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	return 0;
}

int
tk_vc_control_send(const char *path, const char *cmd, char *reply, size_t cap)
{
	struct sockaddr_un sa;
	size_t len = 0;
	int64_t end;
	int fd;

	if (cap == 0)
		return 2;
	reply[0] = '\0';
	if (fill_addr(&sa, path) != 0)
		return 2;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 2;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return 2;
	}
	end = tk_now_ms() + REPLY_TIMEOUT_MS;
	while (len + 1 < cap) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = end - tk_now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		n = recv(fd, reply + len, cap - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	reply[len] = '\0';
	return strncmp(reply, "ok", 2) == 0 ? 0 : 1;
}
