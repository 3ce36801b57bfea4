/* tokenkit tests and benchmarks: load a PKCS#11 module as an application
 * does (dlopen, C_GetFunctionList). Include <dlfcn.h>, <stdio.h> and a
 * pkcs11.h first. */
#ifndef TK_TEST_P11_LOAD_H
#define TK_TEST_P11_LOAD_H

/* The function list of the module at path (loaded for good), or NULL with
 * the reason on stderr after "who: ". */
static inline CK_FUNCTION_LIST_PTR
tk_test_p11_load(const char *who, const char *path)
{
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST_PTR list = NULL;
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	if (lib == NULL) {
		fprintf(stderr, "%s: %s\n", who, dlerror());
		return NULL;
	}
	*(void **)&gfl = dlsym(lib, "C_GetFunctionList");
	if (gfl == NULL || gfl(&list) != CKR_OK || list == NULL) {
		fprintf(stderr, "%s: no C_GetFunctionList in %s\n", who, path);
		return NULL;
	}
	return list;
}

#endif
