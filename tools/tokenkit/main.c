/* tokenkit: command-line tool (placeholder until the tool lands). */
#include <stdio.h>

#include <tokenkit/err.h>

int
main(void)
{
	printf("tokenkit %s\n", tk_strerror(TK_OK));
	return 0;
}
