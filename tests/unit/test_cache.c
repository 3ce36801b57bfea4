/* The public-object cache: file format (encoded here by hand from the
 * format description, not by the code under test), checks, atomic files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "cache.h"

/* Build a file image: magic, version, reserved, identity, records, SHA-256. */
static size_t
image(uint8_t *out, const char *magic, uint16_t version, const char *identity, uint32_t count,
      const uint32_t *keys, const char *const *vals, bool good_digest)
{
	size_t n = 0, il = strlen(identity);
	unsigned int dl = 0;

	memcpy(out, magic, 8);
	n = 8;
	out[n++] = (uint8_t)(version >> 8);
	out[n++] = (uint8_t)version;
	out[n++] = 0;
	out[n++] = 0;
	out[n++] = (uint8_t)(il >> 8);
	out[n++] = (uint8_t)il;
	memcpy(out + n, identity, il);
	n += il;
	out[n++] = (uint8_t)(count >> 24);
	out[n++] = (uint8_t)(count >> 16);
	out[n++] = (uint8_t)(count >> 8);
	out[n++] = (uint8_t)count;
	for (uint32_t i = 0; i < count; i++) {
		size_t vl = strlen(vals[i]);

		for (int s = 24; s >= 0; s -= 8)
			out[n++] = (uint8_t)(keys[i] >> s);
		for (int s = 24; s >= 0; s -= 8)
			out[n++] = (uint8_t)(vl >> s);
		memcpy(out + n, vals[i], vl);
		n += vl;
	}
	assert_int_equal(EVP_Digest(out, n, out + n, &dl, EVP_sha256(), NULL), 1);
	if (!good_digest)
		out[n] ^= 0xFF;
	return n + dl;
}

static const uint32_t keys[2] = {0x5FC105, 0x01000009A};
static const char *const vals[2] = {"certificate bytes", ""};

static void
test_decode_reference_image(void **state)
{
	uint8_t buf[512];
	size_t n = image(buf, "TKCACHE1", 1, "piv:00112233", 2, keys, vals, true);
	tk_cache_t *c = NULL;
	const uint8_t *d;
	size_t dl;

	(void)state;
	assert_int_equal(tk_cache_decode(buf, n, &c), TK_OK);
	assert_string_equal(tk_cache_identity(c), "piv:00112233");
	assert_int_equal(tk_cache_count(c), 2);
	assert_int_equal(tk_cache_get(c, 0x5FC105, &d, &dl), TK_OK);
	assert_int_equal(dl, 17);
	assert_memory_equal(d, "certificate bytes", 17);
	assert_int_equal(tk_cache_get(c, keys[1], &d, &dl), TK_OK);
	assert_int_equal(dl, 0);
	assert_int_equal(tk_cache_get(c, 0x7E, &d, &dl), TK_ERR_NOT_FOUND);
	assert_null(d);

	/* encoding gives the same bytes back (records in insertion order) */
	{
		uint8_t *enc = NULL;
		size_t el = 0;

		assert_int_equal(tk_cache_encode(c, &enc, &el), TK_OK);
		assert_int_equal(el, n);
		assert_memory_equal(enc, buf, n);
		free(enc);
	}
	tk_cache_free(&c);
	assert_null(c);
}

static void
test_decode_rejects(void **state)
{
	uint8_t buf[512];
	uint32_t dup[2] = {7, 7};
	tk_cache_t *c = NULL;
	size_t n;

	(void)state;
	n = image(buf, "TKCACHE2", 1, "x", 2, keys, vals, true);
	assert_int_equal(tk_cache_decode(buf, n, &c), TK_ERR_MALFORMED);
	n = image(buf, "TKCACHE1", 2, "x", 2, keys, vals, true);
	assert_int_equal(tk_cache_decode(buf, n, &c), TK_ERR_MALFORMED);
	n = image(buf, "TKCACHE1", 1, "x", 2, keys, vals, false);
	assert_int_equal(tk_cache_decode(buf, n, &c), TK_ERR_BAD_CHECKSUM);
	n = image(buf, "TKCACHE1", 1, "x", 2, dup, vals, true);
	assert_int_equal(tk_cache_decode(buf, n, &c), TK_ERR_MALFORMED);
	/* count says 3, only 2 records: the checksum is right, the body short */
	n = image(buf, "TKCACHE1", 1, "x", 2, keys, vals, true);
	buf[8 + 2 + 2 + 2 + 1 + 3] = 3;
	{
		unsigned int dl = 0;

		EVP_Digest(buf, n - 32, buf + n - 32, &dl, EVP_sha256(), NULL);
	}
	assert_int_equal(tk_cache_decode(buf, n, &c), TK_ERR_TRUNCATED);
	/* every truncation fails */
	n = image(buf, "TKCACHE1", 1, "x", 2, keys, vals, true);
	for (size_t l = 0; l < n; l++) {
		assert_int_not_equal(tk_cache_decode(buf, l, &c), TK_OK);
		assert_null(c);
	}
}

static void
test_store_load(void **state)
{
	char dir[] = "/tmp/tk-test-cache.XXXXXX", sub[128], path[256], cmd[300];
	tk_cache_t *c = NULL, *l = NULL;
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/a/tokenkit", dir);
	assert_int_equal(tk_cache_new("piv:ABCD", &c), TK_OK);
	assert_int_equal(tk_cache_put(c, 1, (const uint8_t *)"one", 3), TK_OK);
	assert_int_equal(tk_cache_put(c, 2, (const uint8_t *)"two", 3), TK_OK);
	assert_int_equal(tk_cache_put(c, 1, (const uint8_t *)"uno", 3), TK_OK);
	assert_int_equal(tk_cache_count(c), 2);
	assert_int_equal(tk_cache_load(sub, "piv:ABCD", &l), TK_ERR_NOT_FOUND);
	assert_int_equal(tk_cache_store(sub, c), TK_OK);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(tk_cache_path(sub, "piv:ABCD", path, sizeof(path)), TK_OK);
	assert_non_null(strstr(path, "/piv_ABCD.cache"));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tk_cache_load(sub, "piv:ABCD", &l), TK_OK);
	assert_true(tk_cache_equal(c, l));
	tk_cache_free(&l);
	/* a file under the name of another identity is foreign */
	{
		char other[256];

		assert_int_equal(tk_cache_path(sub, "piv_ABCD", other, sizeof(other)), TK_OK);
		assert_string_equal(other, path); /* same file name, other identity */
		tk_log_set_level(TK_LOG_NONE);
		assert_int_equal(tk_cache_load(sub, "piv_ABCD", &l), TK_ERR_MALFORMED);
		tk_log_set_level(TK_LOG_WARN);
		assert_null(l);
	}
	/* no temporary files left behind */
	snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 1", sub);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(tk_cache_remove(sub, "piv:ABCD"), TK_OK);
	assert_int_equal(tk_cache_remove(sub, "piv:ABCD"), TK_OK);
	assert_int_equal(tk_cache_load(sub, "piv:ABCD", &l), TK_ERR_NOT_FOUND);
	tk_cache_free(&c);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void
test_dir(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(tk_cache_dir("", out, sizeof(out)), TK_ERR_NOT_SUPPORTED);
	assert_int_equal(tk_cache_dir("/x/y", out, sizeof(out)), TK_OK);
	assert_string_equal(out, "/x/y");
	setenv("XDG_CACHE_HOME", "/xdg", 1);
	assert_int_equal(tk_cache_dir(NULL, out, sizeof(out)), TK_OK);
	assert_string_equal(out, "/xdg/tokenkit");
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", "/home/u", 1);
	assert_int_equal(tk_cache_dir(NULL, out, sizeof(out)), TK_OK);
	assert_string_equal(out, "/home/u/.cache/tokenkit");
	assert_int_equal(tk_cache_dir(NULL, out, 5), TK_ERR_TOO_LONG);
	assert_int_equal(tk_cache_path("/d", "", out, sizeof(out)), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_cache_path("/d", "../../etc/x", out, sizeof(out)), TK_OK);
	assert_string_equal(out, "/d/______etc_x.cache");
}

/* A cache directory another user prepared, or one opened up to a group:
 * nothing is written there and nothing planted there is read. Planted
 * files in our own directory (a FIFO that would block the reader, a
 * symlink at the temporary name the old code used) change nothing. */
static int warnings;

static void
count_warnings(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)msg;
	if (level == TK_LOG_WARN)
		warnings++;
}

static void
test_store_refused(void **state)
{
	char dir[] = "/tmp/tk-test-cache.XXXXXX", sub[128], path[256], cmd[300], pred[300];
	tk_cache_t *c = NULL, *l = NULL;
	uint8_t *img = NULL;
	size_t img_len = 0;
	FILE *f;

	(void)state;
	alarm(60); /* a blocking open fails the test instead of hanging it */
	assert_non_null(mkdtemp(dir));
	tk_log_set_sink(count_warnings, NULL);
	assert_int_equal(tk_cache_new("piv:ABCD", &c), TK_OK);
	assert_int_equal(tk_cache_put(c, 1, (const uint8_t *)"cert", 4), TK_OK);
	assert_int_equal(tk_cache_encode(c, &img, &img_len), TK_OK);

	/* group-writable */
	snprintf(sub, sizeof(sub), "%s/shared", dir);
	assert_int_equal(mkdir(sub, 0770), 0);
	assert_int_equal(chmod(sub, 0770), 0);
	assert_int_equal(tk_cache_store(sub, c), TK_ERR_UNSAFE);
	assert_int_equal(tk_cache_path(sub, "piv:ABCD", path, sizeof(path)), TK_OK);
	assert_int_equal(access(path, F_OK), -1);
	/* a valid file planted there is not believed */
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(img, 1, img_len, f), img_len);
	fclose(f);
	assert_int_equal(tk_cache_load(sub, "piv:ABCD", &l), TK_ERR_UNSAFE);
	assert_null(l);
	assert_int_equal(warnings, 1); /* one warning per process */

	/* another user's directory, private to them */
	if (geteuid() == 0) {
		snprintf(sub, sizeof(sub), "%s/theirs", dir);
		assert_int_equal(mkdir(sub, 0700), 0);
		assert_int_equal(chown(sub, 4242, 4242), 0);
		assert_int_equal(tk_cache_store(sub, c), TK_ERR_UNSAFE);
		snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s)\"", sub);
		assert_int_equal(system(cmd), 0);
	}

	/* our own directory with a FIFO and symlinks planted in it */
	snprintf(sub, sizeof(sub), "%s/ours", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(tk_cache_path(sub, "piv:ABCD", path, sizeof(path)), TK_OK);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(tk_cache_load(sub, "piv:ABCD", &l), TK_ERR_UNSAFE);
	snprintf(pred, sizeof(pred), "%s.tmp.%ld", path, (long)getpid());
	assert_int_equal(symlink("/nonexistent/victim", pred), 0);
	assert_int_equal(tk_cache_store(sub, c), TK_OK);
	assert_int_equal(tk_cache_load(sub, "piv:ABCD", &l), TK_OK);
	assert_true(tk_cache_equal(c, l));
	assert_int_equal(access("/nonexistent/victim", F_OK), -1);

	tk_log_set_sink(NULL, NULL);
	alarm(0);
	tk_cache_free(&l);
	tk_cache_free(&c);
	free(img);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_decode_reference_image),
	        cmocka_unit_test(test_decode_rejects),
	        cmocka_unit_test(test_store_load),
	        cmocka_unit_test(test_dir),
	        cmocka_unit_test(test_store_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
