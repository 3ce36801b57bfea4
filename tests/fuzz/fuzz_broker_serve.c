/* Fuzz target: tokenkitd's handlers (tools/tokenkitd/serve.c, report.c),
 * behind the framing that fuzz_broker_msg covers: what a client of the
 * broker's user can make the broker do with requests that parse. One
 * connection per input, served by the broker's own connection thread over
 * a socketpair: a valid hello, a session opened on the first token (when
 * the embedded module underneath has one: the build's in-process virtual
 * card, through its reader plugin), then the input's requests.
 *
 * Input: requests, each
 *   1 byte   function: bits 0-6 the PKCS#11 function's place (modulo their
 *            count), bit 7 "raw"; 0xFA: BP_READER_RESET, 0xFB: BP_CARD_IO,
 *            0xFC: BP_CARD_OPEN,
 *            0xFD: BP_READERS, 0xFE: BP_TOKENS, 0xFF: a second BP_HELLO
 *   2 bytes  big-endian length L of what follows
 *   L bytes  CBOR items: the request's arguments. For a function of a
 *            session, unless raw, the session's handle goes first (the
 *            handles the module gives out change from input to input).
 * framed here as [BP_VERSION, function, call id, [arguments]]. Every
 * answer is read; the broker must not crash, leak or hang, and a request
 * that does not parse closes only its own connection. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tokenkit/mem.h>

#include "bproto.h"
#include "broker.h"
#include "p11.h"
#include "remote.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REQUESTS 64
#define IO_MS 20000 /* a broker that answers nothing for this long hangs */

static uint64_t next_client;
static CK_SLOT_ID token_slot;
static bool have_token;

static char work[256]; /* the process's directory */

/* The card's state, the registry and the cache go with the process. */
static void
remove_dir(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", work);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_broker_serve: %s left behind\n", work);
}

#ifdef TK_FUZZ_TOOL
/* Keys and certificates on the virtual card (its state file), made by the
 * build's tokenkit tool as a user would: P-256 in 9A and 9C (PIN always),
 * RSA-2048 in 9D, so that signing, decryption and the context-specific
 * login have keys to work on. Without the tool the card stays empty. */
static void
provision(const char *where)
{
	static const struct {
		const char *slot, *alg;
	} keys[] = {{"9a", "eccp256"}, {"9c", "eccp256"}, {"9d", "rsa2048"}};
	char cmd[1024];

	if (access(TK_FUZZ_TOOL, X_OK) != 0)
		return;
	snprintf(cmd, sizeof(cmd), "echo 123456 >'%s/pin'", where);
	if (system(cmd) != 0)
		return;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(cmd, sizeof(cmd),
		         "'%s' piv generate 'tokenkit virtual reader 0' %s --algorithm %s "
		         "--default-mgmt-key >/dev/null 2>&1 && '%s' piv certificate "
		         "'tokenkit virtual reader 0' %s --self-sign /CN=fuzz --default-mgmt-key "
		         "--pin-fd 3 3<'%s/pin' >/dev/null 2>&1",
		         TK_FUZZ_TOOL, keys[i].slot, keys[i].alg, TK_FUZZ_TOOL, keys[i].slot,
		         where);
		if (system(cmd) != 0)
			fprintf(stderr, "fuzz_broker_serve: could not provision %s\n",
			        keys[i].slot);
	}
}
#else
static void
provision(const char *where)
{
	(void)where;
}
#endif

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	snprintf(work, sizeof(work), "%s/fuzz_broker_serve.XXXXXX",
	         tmp != NULL && *tmp == '/' ? tmp : "/tmp");
	if (strlen(tmp != NULL ? tmp : "") > 200 || mkdtemp(work) == NULL)
		abort();
	atexit(remove_dir);
	/* nothing of the user's: no pcscd, no registry, no object cache */
	setenv("PCSCLITE_CSOCK_NAME", "/nonexistent/tokenkit-fuzz/pcscd.comm", 1);
	setenv("XDG_STATE_HOME", work, 1);
	setenv("XDG_CACHE_HOME", work, 1);
	setenv("XDG_RUNTIME_DIR", work, 1);
	if (getenv("TOKENKIT_LOG") == NULL)
		setenv("TOKENKIT_LOG", "none", 1);
#ifdef TK_FUZZ_PLUGIN_DIR
	if (access(TK_FUZZ_PLUGIN_DIR "/reader-vcard.so", R_OK) == 0) {
		char spec[320];

		snprintf(spec, sizeof(spec), "vcard:latency=none,state=%s/card.state", work);
		setenv("TOKENKIT_PLUGIN_PATH", TK_FUZZ_PLUGIN_DIR, 1);
		setenv("TOKENKIT_READERS", spec, 1);
		provision(work);
	}
#endif
	/* as tokenkitd's main() */
	g_conf.uid = getuid();
	memset(g_conf.instance, 0x5A, sizeof(g_conf.instance));
	tk_p11_remote_disable();
	tk_p11_default_readers = "pcsc";
	broker_serve_init();
	if (C_Initialize(NULL) != CKR_OK)
		abort();
	{
		CK_SLOT_ID slots[4];
		CK_ULONG n = 4;

		have_token = C_GetSlotList(CK_TRUE, slots, &n) == CKR_OK && n > 0;
		if (have_token)
			token_slot = slots[0];
	}
	return 0;
}

/* CBOR head of major type 0 (unsigned) or 4 (array). */
static size_t
cbor_head(uint8_t *p, uint8_t major, uint64_t v)
{
	major <<= 5;
	if (v < 24) {
		p[0] = major | (uint8_t)v;
		return 1;
	}
	if (v <= 0xFF) {
		p[0] = major | 24;
		p[1] = (uint8_t)v;
		return 2;
	}
	if (v <= 0xFFFF) {
		p[0] = major | 25;
		p[1] = (uint8_t)(v >> 8);
		p[2] = (uint8_t)v;
		return 3;
	}
	p[0] = major | 26;
	for (int i = 0; i < 4; i++)
		p[1 + i] = (uint8_t)(v >> (24 - 8 * i));
	return 5;
}

/* Append one framed message: 4-byte length, then [version, fn, id,
 * [session if given, items...]] (the arguments an indefinite array). */
static bool
frame(uint8_t **buf, size_t *len, size_t *cap, uint32_t fn, uint64_t id, const uint64_t *session,
      const uint8_t *items, size_t items_len)
{
	uint8_t head[64];
	size_t h = 0, need;

	h += cbor_head(head + h, 4, 4);
	h += cbor_head(head + h, 0, BP_VERSION);
	h += cbor_head(head + h, 0, fn);
	h += cbor_head(head + h, 0, id);
	head[h++] = 0x9F; /* indefinite array */
	if (session != NULL)
		h += cbor_head(head + h, 0, *session);
	need = *len + 4 + h + items_len + 1;
	if (need > *cap) {
		uint8_t *n = realloc(*buf, need * 2);

		if (n == NULL)
			return false;
		*buf = n;
		*cap = need * 2;
	}
	for (int i = 0; i < 4; i++)
		(*buf)[*len + i] = (uint8_t)((h + items_len + 1) >> (24 - 8 * i));
	memcpy(*buf + *len + 4, head, h);
	if (items_len > 0)
		memcpy(*buf + *len + 4 + h, items, items_len);
	(*buf)[need - 1] = 0xFF; /* break */
	*len = need;
	return true;
}

/* Read one answer; its first result (0 when there is none). */
static bool
answer(int fd, struct bp_rbuf *rb, uint64_t *first)
{
	uint8_t *p = NULL;
	size_t n = 0;
	struct bp_msg m;
	bool ok;

	if (bp_read_msg(fd, rb, &p, &n, -1) != 0)
		return false;
	ok = bp_decode(p, n, false, &m) == NULL && m.rv == CKR_OK;
	*first = ok && m.body.i < m.body.n ? bp_get_u(&m.body) : 0;
	bp_msg_free(&m);
	free(p);
	return ok;
}

/* Write out, read every answer until the broker closes. */
static void
converse(int fd, const uint8_t *out, size_t len)
{
	uint8_t in[65536];
	size_t done = 0;
	bool open = true;

	if (len == 0)
		(void)shutdown(fd, SHUT_WR);
	while (open) {
		struct pollfd p = {.fd = fd, .events = POLLIN | (done < len ? POLLOUT : 0)};
		int r = poll(&p, 1, IO_MS);

		if (r == 0) {
			fprintf(stderr,
			        "fuzz_broker_serve: the broker answered nothing for %d ms\n",
			        IO_MS);
			abort();
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			abort();
		}
		if (p.revents & POLLOUT) {
			ssize_t n = send(fd, out + done, len - done, MSG_NOSIGNAL);

			if (n > 0)
				done += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				done = len; /* the broker closed: read what is left */
			if (done == len)
				(void)shutdown(fd, SHUT_WR);
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(fd, in, sizeof(in), 0);

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				open = false;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = NULL, id[BP_ID_LEN] = {0};
	size_t len = 0, cap = 0;
	uint64_t client = ++next_client, session = 0, skip;
	struct bp_rbuf rb = {0};
	uint8_t open_args[16];
	size_t k = 0;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 0;
	broker_serve_conn(sv[1]); /* the broker's thread owns sv[1] now */
	/* a client id of its own per input: one input's state is not the next's */
	memcpy(id, &client, sizeof(client));
	{
		uint8_t items[8 + BP_ID_LEN];
		size_t i = 0;

		i += cbor_head(items + i, 2, BP_ID_LEN);
		memcpy(items + i, id, BP_ID_LEN);
		i += BP_ID_LEN;
		i += cbor_head(items + i, 0, BP_FEAT_STILL);
		if (!frame(&buf, &len, &cap, BP_HELLO, 1, NULL, items, i))
			goto out;
	}
	if (have_token) {
		k += cbor_head(open_args + k, 0, token_slot);
		k += cbor_head(open_args + k, 0, CKF_SERIAL_SESSION | CKF_RW_SESSION);
		if (!frame(&buf, &len, &cap, BP_C_OpenSession, 2, NULL, open_args, k))
			goto out;
	}
	if (bp_write_all(sv[0], buf, len, -1) != 0 || !answer(sv[0], &rb, &skip) ||
	    (have_token && !answer(sv[0], &rb, &session)))
		goto out;
	len = 0;
	for (unsigned n = 0; n < MAX_REQUESTS && size >= 3; n++) {
		uint8_t f = data[0];
		size_t l = (size_t)data[1] << 8 | data[2];
		uint32_t fn = f == 0xFA   ? BP_READER_RESET
		              : f == 0xFB ? BP_CARD_IO
		              : f == 0xFC ? BP_CARD_OPEN
		              : f == 0xFD ? BP_READERS
		              : f == 0xFE ? BP_TOKENS
		              : f == 0xFF ? BP_HELLO
		                          : (uint32_t)(f & 0x7F) % BP_FN_COUNT;
		bool raw = f < 0xFA && (f & 0x80) != 0;

		data += 3;
		size -= 3;
		if (l > size)
			l = size;
		if (!frame(&buf, &len, &cap, fn, n + 3,
		           raw || !bp_fn_has_session(fn) ? NULL : &session, data, l))
			break;
		data += l;
		size -= l;
	}
	/* what the first answers left in rb is not needed: read from the socket */
	converse(sv[0], buf, len);
out:
	bp_rbuf_wipe(&rb);
	close(sv[0]);
	free(buf);
	return 0;
}
