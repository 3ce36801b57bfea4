/* tokenkitd: consent before a program's first use of a private key.
 *
 * In this order: the decision stored for the program (executable path and
 * uid), token and key (tokenkit consent list|reset); the policy file (for
 * headless use: lines "always|once|deny PROGRAM", PROGRAM an absolute path
 * or "*", first match wins, '#' comments); the prompt program, whose answer
 * is stored; without any of them, or when the prompt fails or takes longer
 * than BROKER_PROMPT_MS: deny (not stored, so the next use asks again).
 *
 * The prompt program runs with the key's facts in its environment
 * (TOKENKIT_CONSENT_PROGRAM, _UID, _PID, _TOKEN, _TOKEN_SERIAL, _KEY,
 * _KEY_ID) and answers "always", "once" or "deny" on its first line of
 * standard output.
 *
 * "always" decisions read from the store are remembered while the store
 * does not change, so a program's every C_SignInit does not read it again:
 * an inotify watch on the store's directory (a record created, written,
 * renamed or removed; the directory itself moved, removed or its mode
 * changed) forgets them all at the next check. Without a watch nothing is
 * remembered. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tokenkit/consent.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "bproto.h"
#include "broker.h"
#include "clock.h"
#include "consent_priv.h"

static pthread_mutex_t consent_lock = PTHREAD_MUTEX_INITIALIZER; /* one prompt at a time */

/* The store and what is remembered of it (under consent_lock). */
#define KNOWN_MAX 64
static struct {
	tk_consent_t *store;                            /* kept open while watched */
	int ifd;                                        /* the watch, or -1 */
	char known[KNOWN_MAX][TK_CONSENT_NAME_LEN + 1]; /* records that say "always" */
	size_t n, next;
} K = {.ifd = -1};

static void
store_close(void)
{
	tk_consent_free(&K.store);
	if (K.ifd >= 0)
		close(K.ifd);
	K.ifd = -1;
	K.n = K.next = 0;
}

/* Whether the watched store is still the one open and what is remembered of
 * it still holds (events read: forget). False: open it again. */
static bool
store_same(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	const uint32_t gone = IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW;
	ssize_t n;

	while ((n = read(K.ifd, buf, sizeof(buf))) > 0) {
		K.n = K.next = 0;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			if ((ev->mask & gone) != 0 || ((ev->mask & IN_ATTRIB) != 0 && ev->len == 0))
				return false; /* (its mode: checked again on open) */
			p += sizeof(*ev) + ev->len;
		}
	}
	return n < 0 && (errno == EAGAIN || errno == EINTR);
}

/* The store, open: kept while a watch is on it, else opened per check (the
 * caller frees it when !K.ifd). NULL when it cannot be opened (logged). */
static tk_consent_t *
store_get(void)
{
	const uint32_t what = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE |
	                      IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR |
	                      IN_DONT_FOLLOW;
	tk_consent_t *first = NULL;
	int r;

	if (K.store != NULL && K.ifd >= 0 && store_same())
		return K.store;
	store_close();
	/* open, watch the path, open again: the store kept is the one the
	 * path names once the watch is on (a directory put in its place in
	 * between is an event) */
	r = tk_consent_open(g_conf.consent_dir, &first);
	if (r == TK_OK && (K.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) >= 0 &&
	    (inotify_add_watch(K.ifd, tk_consent_path(first), what) < 0 ||
	     tk_consent_open(g_conf.consent_dir, &K.store) != TK_OK)) {
		close(K.ifd);
		K.ifd = -1;
	}
	if (r != TK_OK)
		tk_log_warn("tokenkitd: consent store: %s", tk_strerror(r));
	if (K.ifd < 0)
		return first; /* unwatched: read each time */
	tk_consent_free(&first);
	return K.store;
}

static bool
known(const char *name)
{
	for (size_t i = 0; i < K.n; i++)
		if (strcmp(K.known[i], name) == 0)
			return true;
	return false;
}

static void
remember(const char *name)
{
	if (K.ifd < 0 || known(name))
		return;
	snprintf(K.known[K.next], sizeof(K.known[K.next]), "%s", name);
	K.next = (K.next + 1) % KNOWN_MAX;
	if (K.n < KNOWN_MAX)
		K.n++;
}

static int
decision_of(const char *word)
{
	if (strcmp(word, "always") == 0)
		return TK_CONSENT_ALWAYS;
	if (strcmp(word, "once") == 0)
		return TK_CONSENT_ONCE;
	if (strcmp(word, "deny") == 0)
		return TK_CONSENT_DENY;
	return TK_CONSENT_NONE;
}

static int
from_policy(const char *exe)
{
	FILE *f;
	char line[4200], word[16], prog[4097];
	int d = TK_CONSENT_NONE;

	if (g_conf.policy == NULL || (f = fopen(g_conf.policy, "re")) == NULL)
		return TK_CONSENT_NONE;
	while (d == TK_CONSENT_NONE && fgets(line, sizeof(line), f) != NULL) {
		if (line[0] == '#' || sscanf(line, "%15s %4096s", word, prog) != 2)
			continue;
		if (strcmp(prog, "*") == 0 || strcmp(prog, exe) == 0)
			d = decision_of(word);
	}
	fclose(f);
	return d;
}

static void
still(const struct consent_key *k)
{
	if (k->still != NULL)
		k->still();
}

/* One prompt at a time; the client waiting behind another one's hears
 * from us meanwhile. */
static void
lock_prompts(const struct consent_key *k)
{
	struct timespec ts;

	for (;;) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += BP_STILL_MS / 1000;
		if (pthread_mutex_timedlock(&consent_lock, &ts) == 0)
			return;
		still(k);
	}
}

static int
from_prompt(const struct consent_key *k)
{
	int out[2];
	pid_t pid;
	char buf[64] = "", num[2][24];
	size_t got = 0;
	int64_t deadline = tk_now_ms() + BROKER_PROMPT_MS;
	int status, d;

	if (g_conf.prompt == NULL || pipe2(out, O_CLOEXEC) != 0)
		return TK_CONSENT_NONE;
	snprintf(num[0], sizeof(num[0]), "%u", (unsigned)k->uid);
	snprintf(num[1], sizeof(num[1]), "%ld", (long)k->pid);
	pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		setenv("TOKENKIT_CONSENT_PROGRAM", k->exe, 1);
		setenv("TOKENKIT_CONSENT_UID", num[0], 1);
		setenv("TOKENKIT_CONSENT_PID", num[1], 1);
		setenv("TOKENKIT_CONSENT_TOKEN", k->token_label, 1);
		setenv("TOKENKIT_CONSENT_TOKEN_SERIAL", k->token_serial, 1);
		setenv("TOKENKIT_CONSENT_KEY", k->key_label, 1);
		setenv("TOKENKIT_CONSENT_KEY_ID", k->key_id, 1);
		execl(g_conf.prompt, g_conf.prompt, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	if (pid < 0) {
		close(out[0]);
		return TK_CONSENT_NONE;
	}
	while (got < sizeof(buf) - 1) {
		struct pollfd p = {.fd = out[0], .events = POLLIN};
		int64_t left = deadline - tk_now_ms();
		ssize_t n;
		int r;
		if (left <= 0)
			break;
		r = poll(&p, 1, (int)(left < BP_STILL_MS ? left : BP_STILL_MS));
		if (r == 0 || (r < 0 && errno == EINTR)) {
			still(k);
			continue;
		}
		if (r < 0)
			break;
		n = read(out[0], buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\n', got) != NULL)
			break;
	}
	close(out[0]);
	buf[got] = '\0';
	buf[strcspn(buf, "\r\n \t")] = '\0';
	kill(pid, SIGKILL); /* (it answered, or its time is up) */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	d = decision_of(buf);
	if (d == TK_CONSENT_NONE)
		tk_log_warn(
		        "tokenkitd: consent prompt %s gave no answer (\"%s\"): denied this time",
		        g_conf.prompt, buf);
	return d;
}

CK_RV
broker_consent_check(const struct consent_key *k, bool *once)
{
	tk_consent_t *store;
	tk_consent_rec_t rec;
	char name[TK_CONSENT_NAME_LEN + 1];
	int d = TK_CONSENT_NONE, r;
	const char *how = "stored";

	*once = false;
	lock_prompts(k);
	store = store_get();
	if (tk_consent_file_name(k->exe, (uint32_t)k->uid, k->token_serial, k->key_id, name) !=
	    TK_OK)
		name[0] = '\0';
	if (store != NULL && name[0] != '\0' && known(name)) {
		pthread_mutex_unlock(&consent_lock);
		tk_log_debug("tokenkitd: %s (pid %ld) may use key %s (%s) of token %s: always "
		             "(remembered)",
		             k->exe, (long)k->pid, k->key_label, k->key_id, k->token_serial);
		return CKR_OK;
	}
	if (store != NULL &&
	    tk_consent_get(store, k->exe, (uint32_t)k->uid, k->token_serial, k->key_id, &rec) ==
	            TK_OK &&
	    rec.decision != TK_CONSENT_ONCE) {
		d = rec.decision;
		if (d == TK_CONSENT_ALWAYS && name[0] != '\0')
			remember(name);
	}
	if (d == TK_CONSENT_NONE) {
		how = "policy";
		d = from_policy(k->exe);
	}
	if (d == TK_CONSENT_NONE && g_conf.prompt != NULL) {
		how = "prompt";
		d = from_prompt(k);
		if (d != TK_CONSENT_NONE && store != NULL) {
			memset(&rec, 0, sizeof(rec));
			snprintf(rec.program, sizeof(rec.program), "%s", k->exe);
			rec.uid = (uint32_t)k->uid;
			snprintf(rec.token_serial, sizeof(rec.token_serial), "%s", k->token_serial);
			snprintf(rec.token_label, sizeof(rec.token_label), "%s", k->token_label);
			snprintf(rec.key_id, sizeof(rec.key_id), "%s", k->key_id);
			snprintf(rec.key_label, sizeof(rec.key_label), "%s", k->key_label);
			rec.decision = d;
			r = tk_consent_put(store, &rec);
			if (r != TK_OK)
				tk_log_warn("tokenkitd: consent not stored: %s", tk_strerror(r));
		}
	}
	if (store != K.store)
		tk_consent_free(&store);
	pthread_mutex_unlock(&consent_lock);
	if (d == TK_CONSENT_ALWAYS || d == TK_CONSENT_ONCE) {
		*once = d == TK_CONSENT_ONCE;
		tk_log_info("tokenkitd: %s (pid %ld) may use key %s (%s) of token %s: %s (%s)",
		            k->exe, (long)k->pid, k->key_label, k->key_id, k->token_serial,
		            tk_consent_decision_name(d), how);
		return CKR_OK;
	}
	tk_log_warn("tokenkitd: %s (pid %ld, uid %u) refused key %s (%s) of token %s (%s)", k->exe,
	            (long)k->pid, (unsigned)k->uid, k->key_label, k->key_id, k->token_serial,
	            d == TK_CONSENT_DENY ? how : "nobody allowed it");
	return CKR_FUNCTION_REJECTED;
}
