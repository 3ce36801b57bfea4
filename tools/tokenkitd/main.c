/* tokenkitd: the tokenkit broker (tokenkitd(8), README "The broker").
 *
 * One per user: it owns the readers (the embedded module runs here), the
 * registry's slots and the software token's keys, and serves the PKCS#11
 * module in broker mode over a UNIX socket. With --system, one for every
 * user, for shared readers: no user's registered tokens, each client
 * still its own application (serve.c). Crash-only: nothing to clean
 * up, so SIGTERM and kill -9 are the same to it; a client notices the new
 * instance and opens its sessions again. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "broker.h"
#include "env.h"
#include "fsutil.h"
#include "p11.h"
#include "remote.h"

#ifndef TOKENKIT_VERSION
#define TOKENKIT_VERSION "0.1.0"
#endif

/* --carry-transactions MS: one PC/SC transaction of a card goes on from
 * queue turn to queue turn for up to MS (tk_slotmgr_opts_t.txn_carry_ms),
 * saving a busy card two round trips to pcscd per turn. Off by default: a
 * program that uses the card through PC/SC directly gets it only when the
 * queue runs empty (pcsc-lite looks for a free card every 100 ms, and a
 * carried transaction leaves it none), so it is for cards nothing but the
 * broker uses. */
#define TXN_CARRY_MAX_MS 60000

static void
usage(FILE *f)
{
	fprintf(f, "usage: tokenkitd [--system] [--socket PATH] [--consent-prompt PROGRAM]\n"
	           "                 [--consent-policy FILE] [--consent-dir DIR]\n"
	           "                 [--carry-transactions MS] [--verbose] [--version] [--help]\n"
	           "The tokenkit broker: serves the PKCS#11 module in broker mode on\n"
	           "$XDG_RUNTIME_DIR/tokenkit/broker.sock (or the socket systemd passes);\n"
	           "with --system, every user on " BP_SYSTEM_SOCKET " (readers only).\n");
}

/* The socket systemd passes (LISTEN_PID, LISTEN_FDS: the first at fd 3). */
static int
activated_socket(void)
{
	const char *pid = tk_env("LISTEN_PID"), *fds = tk_env("LISTEN_FDS");
	struct stat st;

	if (pid == NULL || fds == NULL || strtol(pid, NULL, 10) != (long)getpid() ||
	    strtol(fds, NULL, 10) < 1)
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (fstat(3, &st) != 0 || !S_ISSOCK(st.st_mode))
		return -1;
	return 3;
}

static int
own_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[sizeof(sa.sun_path)];
	char *slash;
	int fd, dfd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "tokenkitd: socket path too long: %s\n", path);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir) {
		fprintf(stderr, "tokenkitd: the socket must be in a directory of its own: %s\n",
		        path);
		return -1;
	}
	*slash = '\0';
	/* a private directory of ours (created 0700), never someone else's;
	 * the system instance's: ours (or root's), others may only enter it */
	if (g_conf.system) {
		if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
			fprintf(stderr, "tokenkitd: %s: %s\n", dir, strerror(errno));
			return -1;
		}
		r = tk_fs_dir_open(dir, TK_FS_DIR_SYSTEM, &dfd);
	} else {
		r = tk_fs_dir_open(dir, TK_FS_DIR_CREATE, &dfd);
	}
	if (r != TK_OK) {
		fprintf(stderr, "tokenkitd: %s: %s\n", dir, tk_strerror(r));
		return -1;
	}
	close(dfd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* a socket left by a broker that died is replaced; a live one is not */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		fprintf(stderr, "tokenkitd: a broker already answers on %s\n", path);
		close(fd);
		return -1;
	}
	close(fd);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	mode_t old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	/* (the system instance: every user may connect; it tells them apart
	 * by SO_PEERCRED) */
	if (r != 0 || chmod(path, g_conf.system ? 0666 : 0600) != 0 || listen(fd, 64) != 0) {
		fprintf(stderr, "tokenkitd: %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"socket", required_argument, NULL, 's'},
	        {"system", no_argument, NULL, 'S'},
	        {"consent-prompt", required_argument, NULL, 'p'},
	        {"consent-policy", required_argument, NULL, 'P'},
	        {"consent-dir", required_argument, NULL, 'd'},
	        {"carry-transactions", required_argument, NULL, 'c'},
	        {"verbose", no_argument, NULL, 'v'},
	        {"version", no_argument, NULL, 'V'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	char path[108], *end;
	const char *sock = NULL;
	int c, lfd, verbose = 0;
	long carry_ms = 0;
	CK_RV rv;

	while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'S':
			g_conf.system = true;
			break;
		case 'p':
			g_conf.prompt = optarg;
			break;
		case 'P':
			g_conf.policy = optarg;
			break;
		case 'd':
			g_conf.consent_dir = optarg;
			break;
		case 'c':
			errno = 0;
			carry_ms = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || carry_ms < 0 ||
			    carry_ms > TXN_CARRY_MAX_MS) {
				fprintf(stderr,
				        "tokenkitd: --carry-transactions: milliseconds, 0 to %d\n",
				        TXN_CARRY_MAX_MS);
				return 2;
			}
			break;
		case 'v':
			verbose++;
			break;
		case 'V':
			printf("tokenkitd %s\n", TOKENKIT_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (g_conf.prompt == NULL)
		g_conf.prompt = tk_env("TOKENKIT_CONSENT_PROMPT");
	if (g_conf.policy == NULL)
		g_conf.policy = tk_env("TOKENKIT_CONSENT_POLICY");
	g_conf.consent = g_conf.prompt != NULL || g_conf.policy != NULL;
	g_conf.uid = getuid();
	if (verbose)
		tk_log_set_level(verbose > 1 ? TK_LOG_DEBUG : TK_LOG_INFO);
	if (getrandom(g_conf.instance, sizeof(g_conf.instance), 0) != sizeof(g_conf.instance))
		return 1;
	signal(SIGPIPE, SIG_IGN);

	lfd = activated_socket();
	if (lfd < 0) {
		if (sock == NULL) {
			if ((g_conf.system ? tk_p11_broker_system_path(path, sizeof(path))
			                   : tk_p11_broker_path(path, sizeof(path))) < 0) {
				fprintf(stderr, "tokenkitd: socket path too long\n");
				return 1;
			}
			sock = path;
		}
		lfd = own_socket(sock);
		if (lfd < 0)
			return 1;
	}

	/* the embedded module, here, for everybody; the broker owns the
	 * readers: PC/SC and the direct USB readers nobody else holds (where
	 * the CCID plugin is installed), as the tokenkit tool lists them */
	tk_p11_remote_disable();
	tk_p11_default_readers = "pcsc+ccid?";
	tk_p11_txn_carry_ms = (int)carry_ms;
	tk_p11_system_broker = g_conf.system;
	rv = C_Initialize(NULL);
	if (rv != CKR_OK) {
		fprintf(stderr, "tokenkitd: the module did not start: 0x%lx\n", (unsigned long)rv);
		return 1;
	}
	broker_serve_init();
	tk_log_info("tokenkitd: serving %s (pid %ld, consent %s)",
	            g_conf.system ? "every user (system instance)" : "its user", (long)getpid(),
	            g_conf.consent ? "on" : "off");
	fprintf(stderr, "tokenkitd: ready\n");
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			broker_serve_conn(fd);
		} else if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
			usleep(100000);
		} else if (errno != EINTR && errno != ECONNABORTED) {
			fprintf(stderr, "tokenkitd: accept: %s\n", strerror(errno));
			return 1;
		}
	}
}
