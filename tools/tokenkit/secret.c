/* Secrets for the tool's commands: read from a file descriptor (one line),
 * asked on the controlling terminal without echo, or (only when the user
 * forces it) taken from the command line. Shared by cmd_soft.c and
 * cmd_piv.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <tokenkit/err.h>

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
