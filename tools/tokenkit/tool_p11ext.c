/* The module's own interface (tokenkit/p11ext.h), for what the tool asks
 * the broker: tokenkit-pkcs11.so is loaded once, from next to the tool (a
 * build tree holds both in its root) or from where it is installed
 * relative to the tool's directory (TK_TOOL_MODULE_REL), never from a path
 * the environment names. The module decides, as for every application,
 * whether a broker answers. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "tool.h"

#ifndef TK_TOOL_MODULE_REL
#define TK_TOOL_MODULE_REL "../lib/pkcs11/tokenkit-pkcs11.so"
#endif

static pthread_once_t ext_once = PTHREAD_ONCE_INIT;
static const tk_p11ext_t *ext;

static bool
load_from(const char *path)
{
	CK_RV (*get)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
	CK_VERSION v = {TK_P11EXT_MAJOR, TK_P11EXT_MINOR};
	CK_INTERFACE_PTR i = NULL;
	void *h;

	if (access(path, R_OK) != 0)
		return false;
	if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		tk_log_debug("tool: the module %s does not load: %s", path, dlerror());
		return false;
	}
	*(void **)&get = dlsym(h, "C_GetInterface");
	if (get == NULL || get((CK_UTF8CHAR_PTR)TK_P11EXT_NAME, &v, &i, 0) != CKR_OK || i == NULL ||
	    i->pFunctionList == NULL) {
		tk_log_debug("tool: %s has no interface \"%s\" %d.%d", path, TK_P11EXT_NAME,
		             TK_P11EXT_MAJOR, TK_P11EXT_MINOR);
		dlclose(h);
		return false;
	}
	ext = i->pFunctionList; /* (the module stays loaded) */
	tk_log_debug("tool: the broker is asked through %s", path);
	return true;
}

static void
load(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	char *slash;

	if (n <= 0)
		return;
	dir[n] = '\0';
	if ((slash = strrchr(dir, '/')) == NULL)
		return;
	*slash = '\0';
	snprintf(path, sizeof(path), "%s/tokenkit-pkcs11.so", dir);
	if (load_from(path))
		return;
	snprintf(path, sizeof(path), "%s/%s", dir, TK_TOOL_MODULE_REL);
	if (!load_from(path))
		tk_log_debug("tool: no tokenkit-pkcs11.so next to the tool or at %s: "
		             "the readers are opened here",
		             path);
}

const tk_p11ext_t *
tool_p11ext(void)
{
	pthread_once(&ext_once, load);
	return ext;
}

int
tool_p11ext_exit(const char *cmd, int rc)
{
	switch (rc) {
	case TK_P11EXT_OK:
		return TOOL_EXIT_OK;
	case TK_P11EXT_NO_READER:
		return TOOL_EXIT_NO_READER;
	case TK_P11EXT_BROKER_FAILED:
		fprintf(stderr, "tokenkit %s: the broker (tokenkitd) failed to answer\n", cmd);
		return TOOL_EXIT_NO_SERVICE;
	case TK_P11EXT_REFUSED:
		fprintf(stderr,
		        "tokenkit %s: the broker (tokenkitd) refused this program the card: "
		        "consent denied (`tokenkit consent list` shows it, `tokenkit consent reset "
		        "--program PATH` forgets it)\n",
		        cmd);
		return TOOL_EXIT_ERROR;
	default:
		return -1;
	}
}

int
tool_broker_readers(const char *cmd, const char *want, tk_slot_diag_t **out, size_t *n)
{
	const tk_p11ext_t *x = tool_p11ext();

	*out = NULL;
	*n = 0;
	if (x == NULL || x->readers == NULL)
		return -1;
	return tool_p11ext_exit(cmd, x->readers(want, out, n));
}

static bool slot_name(const char *reader, char *name, size_t cap);

int
tool_broker_reset(const char *cmd, const char *reader, bool cold, int *err, tk_recovery_t *rec)
{
	const tk_p11ext_t *x = tool_p11ext();
	char name[sizeof(((tk_slot_info_t *)0)->reader)];

	if (x == NULL || x->reader_reset == NULL)
		return -1;
	/* a slot number is the broker's slot (as `tokenkit readers` shows it) */
	if (slot_name(reader, name, sizeof(name)))
		reader = name;
	return tool_p11ext_exit(cmd, x->reader_reset(reader, cold, err, rec));
}

/* --- a card the broker holds (tool_open_card) ------------------------------ */

static int
bc_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
            size_t *resp_len, int timeout_ms)
{
	return ext->card_io(ctx, TK_P11EXT_CARD_TRANSMIT, cmd, cmd_len, resp, resp_cap, resp_len,
	                    timeout_ms);
}

static int
bc_op(void *ctx, int op, int timeout_ms)
{
	return ext->card_io(ctx, op, NULL, 0, NULL, 0, NULL, timeout_ms);
}

static int
bc_begin(void *ctx, int timeout_ms)
{
	return bc_op(ctx, TK_P11EXT_CARD_BEGIN, timeout_ms);
}

static int
bc_end(void *ctx, int timeout_ms)
{
	return bc_op(ctx, TK_P11EXT_CARD_END, timeout_ms);
}

static int
bc_reset(void *ctx, bool cold, int timeout_ms)
{
	return bc_op(ctx, cold ? TK_P11EXT_CARD_RESET_COLD : TK_P11EXT_CARD_RESET_WARM, timeout_ms);
}

static bool
bc_present(void *ctx)
{
	return bc_op(ctx, TK_P11EXT_CARD_STATUS, TK_CARD_DEFAULT_TIMEOUT_MS) == TK_OK;
}

static void
bc_release(void *ctx)
{
	ext->card_close(ctx);
}

static int
bc_pinpad(void *ctx, const tk_card_pinpad_t *req, uint8_t *resp, size_t resp_cap, size_t *resp_len,
          int timeout_ms)
{
	return ext->card_pinpad(ctx, req, resp, resp_cap, resp_len, timeout_ms);
}

static const tk_card_io_t broker_card_io = {
        .transmit = bc_transmit,
        .begin = bc_begin,
        .end = bc_end,
        .reset = bc_reset,
        .present = bc_present,
        .release = bc_release,
        .pinpad = bc_pinpad,
};

/* A slot number (as `tokenkit readers` shows the broker's) as its reader's
 * name; false when reader is not one, or no reader has it. */
static bool
slot_name(const char *reader, char *name, size_t cap)
{
	tk_slot_diag_t *d = NULL;
	size_t n = 0;
	char *end = NULL;
	unsigned long v = strtoul(reader, &end, 10);
	bool found = false;

	if (end == reader || *end != '\0' || ext->readers(NULL, &d, &n) != TK_P11EXT_OK)
		return false;
	for (size_t i = 0; i < n && !found; i++)
		if (d[i].info.slot_id == v && d[i].info.state != TK_SLOT_ABSENT) {
			snprintf(name, cap, "%s", d[i].info.reader);
			found = true;
		}
	free(d);
	return found;
}

int
tool_broker_card(const char *cmd, const char *reader, tk_card_t **c)
{
	const tk_p11ext_t *x = tool_p11ext();
	tk_p11ext_card_info_t info;
	tk_p11ext_card_t *h = NULL;
	char name[sizeof(info.reader)];
	int rc, r;

	*c = NULL;
	if (x == NULL || x->card_open == NULL)
		return -1;
	rc = x->card_open(reader, &h, &info);
	if (rc == TK_P11EXT_NO_READER && slot_name(reader, name, sizeof(name)))
		rc = x->card_open(name, &h, &info);
	if (rc == TK_P11EXT_NO_READER) {
		fprintf(stderr,
		        "tokenkit %s: no reader of the broker (tokenkitd) matches '%s' (exact "
		        "name, "
		        "unique prefix or substring, or slot id; `tokenkit readers` lists them)\n",
		        cmd, tool_text(reader));
		return TOOL_EXIT_NO_READER;
	}
	if (rc != TK_P11EXT_OK)
		return tool_p11ext_exit(cmd, rc);
	if (info.err != TK_OK) {
		fprintf(stderr, "tokenkit %s: %s (slot %u of the broker): %s\n", cmd,
		        tool_text(info.reader), info.slot_id, tk_strerror(info.err));
		return tool_exit_code(info.err);
	}
	tk_log_debug("tool: %s: the broker's card, slot %u", info.reader, info.slot_id);
	r = tk_card_new_io(info.reader, info.atr, info.atr_len, &info.caps, &broker_card_io, h, c);
	if (r != TK_OK) {
		x->card_close(h);
		fprintf(stderr, "tokenkit %s: %s\n", cmd, tk_strerror(r));
		return tool_exit_code(r);
	}
	return TOOL_EXIT_OK;
}
