/* Fuzz target: a broker connection's shared memory (pkcs11/bring.c) as a
 * hostile client leaves it — any write and read positions, any bytes in
 * the ring — read by the broker's end as messages (bp_read_msg) and written
 * into (bp_ring_write), between the client's own writes through its end.
 * Nothing may crash, hang or read or write outside the area; what the
 * broker reads is a message of at most BP_MAX_MSG bytes or an error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bproto.h"
#include "bring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t
take32(const uint8_t **p, const uint8_t *end)
{
	uint32_t v = 0;

	for (int i = 0; i < 4 && *p < end; i++)
		v = v << 8 | *(*p)++;
	return v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	struct bp_rbuf rb;
	struct bp_ring *client;
	uint8_t *area, *msg, *head;
	size_t area_size = 4096 + 2 * (size_t)BP_RING_CAP, len;
	int sv[2], memfd;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 0;
	memset(&rb, 0, sizeof(rb));
	rb.ring = bp_ring_new(&memfd);
	if (rb.ring == NULL) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	client = bp_ring_attach(memfd, BP_RING_CAP);
	area = mmap(NULL, area_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	head = area;
	for (int steps = 0; p < end && steps < 64 && client != NULL && area != MAP_FAILED;
	     steps++) {
		uint8_t op = *p++;
		uint32_t v, n;

		switch (op % 6) {
		case 0: /* the client's write position */
			v = take32(&p, end);
			memcpy(head + 64 * 3, &v, 4);
			break;
		case 1: /* the client's read position */
			v = take32(&p, end);
			memcpy(head + 64 * 5, &v, 4);
			break;
		case 2: /* bytes straight into the requests' ring */
			v = take32(&p, end) % BP_RING_CAP;
			n = p < end ? *p++ : 0;
			if (n > (size_t)(end - p))
				n = (uint32_t)(end - p);
			if (n > BP_RING_CAP - v)
				n = BP_RING_CAP - v;
			memcpy(area + 4096 + v, p, n);
			p += n;
			break;
		case 3: /* the broker reads what is there */
			while (bp_read_msg(sv[0], &rb, &msg, &len, 0) == 0) {
				if (len == 0 || len > BP_MAX_MSG)
					abort();
				free(msg);
			}
			break;
		case 4: /* the broker answers */
			n = p < end ? *p++ * 97u : 0;
			msg = calloc(1, n + 1);
			(void)bp_ring_write(rb.ring, sv[0], msg, n, 0, 0);
			free(msg);
			break;
		case 5: /* the client writes through its own end */
			n = p < end ? *p++ : 0;
			if (n > (size_t)(end - p))
				n = (uint32_t)(end - p);
			(void)bp_ring_write(client, sv[1], p, n, 0, 0);
			p += n;
			break;
		}
	}
	if (area != MAP_FAILED)
		munmap(area, area_size);
	bp_ring_free(client);
	bp_rbuf_wipe(&rb);
	close(memfd);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
