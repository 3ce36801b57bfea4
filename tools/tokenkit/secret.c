/* Secrets for the tool's commands: read from a file descriptor (one line),
 * asked on the controlling terminal without echo, or (only when the user
 * forces it) taken from the command line; confirmations on the terminal.
 * Shared by cmd_soft.c, cmd_piv*.c and cmd_openpgp.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "tool.h"

bool
tool_parse_uint(const char *s, unsigned max, unsigned *v)
{
	char *end;
	unsigned long u;

	errno = 0;
	u = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || u > max)
		return false;
	*v = (unsigned)u;
	return true;
}

bool
tool_parse_fd(const char *s, int *fd)
{
	unsigned v;

	if (!tool_parse_uint(s, 1024, &v))
		return false;
	*fd = (int)v;
	return true;
}

/* One line from fd, read a byte at a time (another secret may follow on
 * the same descriptor). */
int
tool_read_line(int fd, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;
	char c;

	for (;;) {
		ssize_t got = read(fd, &c, 1);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return TK_ERR_IO;
		if (got == 0 || c == '\n')
			break;
		if (n + 1 >= cap)
			return TK_ERR_TOO_LONG;
		buf[n++] = c;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	*len = n;
	return TK_OK;
}

/* The terminal to ask on: the controlling one, with us in its foreground
 * (a background job would be stopped by the read: a hang). -1: none. */
static int
prompt_tty(void)
{
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (!isatty(fd) || tcgetpgrp(fd) != getpgrp()) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
ask_tty(int fd, const char *prompt, char *buf, size_t cap, size_t *len)
{
	struct termios old, quiet;
	int r;

	(void)!write(fd, prompt, strlen(prompt));
	if (tcgetattr(fd, &old) != 0)
		return TK_ERR_IO;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
		return TK_ERR_IO;
	r = tool_read_line(fd, buf, cap, len);
	(void)tcsetattr(fd, TCSAFLUSH, &old);
	(void)!write(fd, "\n", 1);
	return r;
}

/* A secret: from insecure (the command line), fd, or the terminal.
 * TK_ERR_LOGIN_REQUIRED: none of them. */
int
tool_get_secret(const char *what, const char *insecure, int fd, char *buf, size_t cap, size_t *len)
{
	char prompt[96];
	int tty, r;

	*len = 0;
	if (insecure != NULL) {
		if (strlen(insecure) >= cap)
			return TK_ERR_TOO_LONG;
		*len = strlen(insecure);
		memcpy(buf, insecure, *len + 1);
		return TK_OK;
	}
	if (fd >= 0)
		return tool_read_line(fd, buf, cap, len);
	if ((tty = prompt_tty()) < 0)
		return TK_ERR_LOGIN_REQUIRED;
	snprintf(prompt, sizeof(prompt), "%s: ", what);
	r = ask_tty(tty, prompt, buf, cap, len);
	close(tty);
	return r;
}

/* A yes/no question on the terminal (with echo: nothing secret). */
int
tool_confirm(const char *question)
{
	char ans[16];
	size_t n = 0;
	int tty, r;

	if ((tty = prompt_tty()) < 0)
		return TK_ERR_LOGIN_REQUIRED;
	(void)!write(tty, question, strlen(question));
	(void)!write(tty, " [yes/no] ", 10);
	r = tool_read_line(tty, ans, sizeof(ans), &n);
	close(tty);
	if (r == TK_ERR_TOO_LONG)
		return TK_ERR_CANCELLED;
	if (r != TK_OK)
		return r;
	return strcmp(ans, "yes") == 0 ? TK_OK : TK_ERR_CANCELLED;
}

int
tool_confirm_cmd(const char *cmd, bool yes, const char *fmt, ...)
{
	char question[512];
	va_list ap;
	int r;

	if (yes)
		return TOOL_EXIT_OK;
	va_start(ap, fmt);
	vsnprintf(question, sizeof(question), fmt, ap);
	va_end(ap);
	r = tool_confirm(question);

	if (r == TK_ERR_LOGIN_REQUIRED) {
		fprintf(stderr,
		        "tokenkit %s: no terminal to confirm on: give --yes; nothing was changed\n",
		        cmd);
		return TOOL_EXIT_USAGE;
	}
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit %s: not confirmed; nothing was changed\n", cmd);
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

void
tool_secrets_init(const tool_secret_opt_t *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		t[i].s->insecure = NULL;
		t[i].s->fd = -1;
	}
}

bool
tool_secret_opt(const char *a, const char *v, const tool_secret_opt_t *t, size_t n)
{
	char fd[64], insecure[64];

	if (v == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		snprintf(fd, sizeof(fd), "--%s-fd", t[i].name);
		snprintf(insecure, sizeof(insecure), "--insecure-%s", t[i].name);
		if (strcmp(a, fd) == 0)
			return tool_parse_fd(v, &t[i].s->fd);
		if (strcmp(a, insecure) == 0) {
			t[i].s->insecure = v;
			return true;
		}
	}
	return false;
}

int
tool_read_secret(const tool_ask_t *a, const tool_secret_t *s, char *buf, size_t cap, size_t *len)
{
	int r = tool_get_secret(a->what, s->insecure, s->fd, buf, cap, len);

	if (r == TK_ERR_LOGIN_REQUIRED) {
		fprintf(stderr,
		        "tokenkit %s: the %s is needed and there is no terminal to ask on "
		        "(give it with %s N)\n",
		        a->group, a->what, a->fdopt);
		return TOOL_EXIT_LOCKED;
	}
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit %s: cannot read the %s: %s\n", a->group, a->what,
		        tk_strerror(r));
		return TOOL_EXIT_ERROR;
	}
	if (a->max != 0 && (*len < a->min || *len > a->max)) {
		fprintf(stderr, "tokenkit %s: the %s has %zu to %zu characters\n", a->group,
		        a->what, a->min, a->max);
		return TOOL_EXIT_USAGE;
	}
	return TOOL_EXIT_OK;
}

int
tool_read_new_secret(const tool_ask_t *a, const tool_secret_t *s, const tool_secret_t *old,
                     char *buf, size_t cap, size_t *len)
{
	char again[TOOL_SECRET_CAP], prompt[64];
	tool_ask_t twice = *a;
	size_t al = 0;
	int rc;

	if (s->insecure != NULL || s->fd >= 0)
		return tool_read_secret(a, s, buf, cap, len);
	if (old != NULL && old->fd >= 0 && old->insecure == NULL)
		return tool_read_secret(a, old, buf, cap, len);
	if ((rc = tool_read_secret(a, s, buf, cap, len)) != TOOL_EXIT_OK)
		return rc;
	snprintf(prompt, sizeof(prompt), "%s again", a->what);
	twice.what = prompt;
	rc = tool_read_secret(&twice, s, again, sizeof(again), &al);
	if (rc == TOOL_EXIT_OK && (al != *len || !tk_memeq_ct(again, buf, al))) {
		fprintf(stderr, "tokenkit %s: the two %ss differ\n", a->group, a->what);
		rc = TOOL_EXIT_ERROR;
	}
	tk_wipe(again, sizeof(again));
	return rc;
}
