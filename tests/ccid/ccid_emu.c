/* The emulated CCID reader: the USB side. A umockdev testbed with USB
 * devices whose descriptors are a CCID reader's, and an ioctl handler that
 * plays usbfs for libusb: URBs on the control, bulk and interrupt
 * endpoints, claims, CLEAR_HALT and RESET (CCID-TESTING.md lists the
 * ioctls and the pitfalls met here). The reader behind the interfaces is in
 * emu_reader.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/usbdevice_fs.h>
#include <openssl/crypto.h>
#include <sys/ioctl.h>

#include "clock.h"
#include "descriptor.h"
#include "emu_int.h"
#include "message.h"

#define EMU_BUS 1
#define EMU_VOLTAGES 0x07
#define EMU_CLOCK_KHZ 4000
#define EMU_DATA_RATE 10752
#define EMU_MAX_DATA_RATE 344086
#define EMU_BULK_MPS 64
#define EMU_INTR_MPS 8

/* A URB between submit and reap. */
struct emu_urb {
	void *client;
	unsigned gen; /* the plug it was submitted to */
	UMockdevIoctlData *data;
	UMockdevIoctlData *buf;
	struct usbdevfs_urb *urb; /* inside data */
	emu_iface_t *iface;
	bool done;
};

/* One plug of a device: a handler and the generation it serves. */
struct emu_plug {
	ccid_emu_dev_t *dev;
	unsigned gen;
};

void
emu_queue(GQueue *q, const uint8_t *p, size_t len, int64_t due_us)
{
	emu_msg_t *m = g_new0(emu_msg_t, 1);

	m->data = g_memdup2(p, len);
	m->len = len;
	m->due_us = due_us;
	g_queue_push_tail(q, m);
}

void
emu_msg_free(emu_msg_t *m)
{
	if (m == NULL)
		return;
	g_free(m->data);
	g_free(m);
}

/* --- descriptors -------------------------------------------------------------- */

static size_t
put16(uint8_t *p, size_t n, unsigned v)
{
	p[n] = (uint8_t)v;
	p[n + 1] = (uint8_t)(v >> 8);
	return n + 2;
}

static size_t
put32(uint8_t *p, size_t n, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[n + i] = (uint8_t)(v >> (8 * i));
	return n + 4;
}

static size_t
ccid_desc(const emu_iface_t *f, uint8_t *p, size_t n)
{
	p[n++] = TK_CCID_DESC_LEN;
	p[n++] = TK_CCID_DESC_TYPE;
	n = put16(p, n, 0x0110);
	p[n++] = (uint8_t)(f->cfg.nslots - 1);
	p[n++] = EMU_VOLTAGES;
	n = put32(p, n, TK_CCID_PROTO_T0 | TK_CCID_PROTO_T1);
	n = put32(p, n, EMU_CLOCK_KHZ);
	n = put32(p, n, EMU_CLOCK_KHZ);
	p[n++] = 0; /* bNumClockSupported */
	n = put32(p, n, EMU_DATA_RATE);
	n = put32(p, n, EMU_MAX_DATA_RATE);
	p[n++] = 0; /* bNumDataRatesSupported */
	n = put32(p, n, TK_T1_MAX_INF);
	n = put32(p, n, 0); /* dwSynchProtocols */
	n = put32(p, n, 0); /* dwMechanical */
	n = put32(p, n, f->features);
	n = put32(p, n, f->max_msg);
	p[n++] = 0xFF; /* bClassGetResponse: echo */
	p[n++] = 0xFF; /* bClassEnvelope */
	n = put16(p, n, 0);
	p[n++] = f->cfg.pin_support;
	p[n++] = 1; /* bMaxCCIDBusySlots */
	return n;
}

static size_t
endpoint(uint8_t *p, size_t n, uint8_t addr, uint8_t type, unsigned mps, uint8_t interval)
{
	p[n++] = 7;
	p[n++] = 0x05;
	p[n++] = addr;
	p[n++] = type;
	n = put16(p, n, mps);
	p[n++] = interval;
	return n;
}

static void
build_descriptors(ccid_emu_dev_t *d)
{
	uint8_t *p = d->desc;
	size_t n = 0, cfg;

	/* device */
	p[n++] = 18;
	p[n++] = 0x01;
	n = put16(p, n, 0x0200);
	p[n++] = 0; /* class per interface */
	p[n++] = 0;
	p[n++] = 0;
	p[n++] = 64;
	n = put16(p, n, d->cfg.vid);
	n = put16(p, n, d->cfg.pid);
	n = put16(p, n, d->cfg.release);
	p[n++] = 1;
	p[n++] = 2;
	p[n++] = 3;
	p[n++] = 1;
	/* configuration */
	cfg = n;
	p[n++] = 9;
	p[n++] = 0x02;
	n = put16(p, n, 0);
	p[n++] = (uint8_t)d->nifaces;
	p[n++] = 1;
	p[n++] = 0;
	p[n++] = 0xA0; /* bus powered, remote wakeup */
	p[n++] = 50;
	for (unsigned i = 0; i < d->nifaces; i++) {
		emu_iface_t *f = &d->ifaces[i];
		unsigned neps = f->cfg.no_interrupt ? 2 : 3;

		p[n++] = 9;
		p[n++] = 0x04;
		p[n++] = f->number;
		p[n++] = 0;
		p[n++] = (uint8_t)neps;
		p[n++] = f->cfg.vendor_class ? TK_CCID_VENDOR_CLASS : TK_CCID_CLASS;
		p[n++] = 0;
		p[n++] = 0;
		p[n++] = 0;
		if (!f->cfg.desc_after_eps)
			n = ccid_desc(f, p, n);
		n = endpoint(p, n, f->ep_out, 0x02, EMU_BULK_MPS, 0);
		n = endpoint(p, n, f->ep_in, 0x02, EMU_BULK_MPS, 0);
		if (!f->cfg.no_interrupt)
			n = endpoint(p, n, f->ep_intr, 0x03, EMU_INTR_MPS, 0x10);
		if (f->cfg.desc_after_eps)
			n = ccid_desc(f, p, n);
	}
	(void)put16(p, cfg + 2, (unsigned)(n - cfg));
	d->desc_len = n;
}

/* --- the testbed records ------------------------------------------------------ */

static char *
hex(const uint8_t *p, size_t n)
{
	char *s = g_malloc(2 * n + 1);

	for (size_t i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	s[2 * n] = '\0';
	return s;
}

static bool
add_records(ccid_emu_dev_t *d)
{
	ccid_emu_t *e = d->emu;
	g_autofree char *h = hex(d->desc, d->desc_len);
	g_autofree char *rec = NULL;
	GError *err = NULL;
	unsigned minor = (d->bus - 1) * 128 + d->devnum - 1;

	rec = g_strdup_printf("P: %s\n"
	                      "N: bus/usb/%03u/%03u\n"
	                      "E: SUBSYSTEM=usb\n"
	                      "E: DEVTYPE=usb_device\n"
	                      "E: DRIVER=usb\n"
	                      "E: DEVNAME=%s\n"
	                      "E: BUSNUM=%03u\n"
	                      "E: DEVNUM=%03u\n"
	                      "E: MAJOR=189\n"
	                      "E: MINOR=%u\n"
	                      "E: PRODUCT=%x/%x/%x\n"
	                      "E: TYPE=0/0/0\n"
	                      "A: busnum=%u\\n\n"
	                      "A: devnum=%u\\n\n"
	                      "A: speed=12\\n\n"
	                      "A: bConfigurationValue=1\\n\n"
	                      "A: bNumConfigurations=1\\n\n"
	                      "A: bNumInterfaces=%2u\\n\n"
	                      "A: bDeviceClass=00\\n\n"
	                      "A: bMaxPower=100mA\\n\n"
	                      "A: idVendor=%04x\\n\n"
	                      "A: idProduct=%04x\\n\n"
	                      "A: bcdDevice=%04x\\n\n"
	                      "A: manufacturer=%s\\n\n"
	                      "A: product=%s\\n\n"
	                      "A: serial=%s\\n\n"
	                      "A: version= 2.00\\n\n"
	                      "A: maxchild=0\\n\n"
	                      "H: descriptors=%s\n",
	                      d->syspath, d->bus, d->devnum, d->devnode, d->bus, d->devnum, minor,
	                      d->cfg.vid, d->cfg.pid, d->cfg.release, d->bus, d->devnum, d->nifaces,
	                      d->cfg.vid, d->cfg.pid, d->cfg.release, d->manufacturer, d->product,
	                      d->serial, h);
	if (!umockdev_testbed_add_from_string(e->tb, rec, &err)) {
		fprintf(stderr, "ccid_emu: add device: %s\n", err ? err->message : "?");
		g_clear_error(&err);
		return false;
	}
	for (unsigned i = 0; i < d->nifaces; i++) {
		emu_iface_t *f = &d->ifaces[i];
		unsigned cls = f->cfg.vendor_class ? TK_CCID_VENDOR_CLASS : TK_CCID_CLASS;
		g_autofree char *irec = g_strdup_printf(
		        "P: %s/%u-%u:1.%u\n"
		        "E: SUBSYSTEM=usb\n"
		        "E: DEVTYPE=usb_interface\n"
		        "E: PRODUCT=%x/%x/%x\n"
		        "E: TYPE=0/0/0\n"
		        "E: INTERFACE=%u/0/0\n"
		        "A: bInterfaceNumber=%02x\\n\n"
		        "A: bAlternateSetting= 0\\n\n"
		        "A: bInterfaceClass=%02x\\n\n"
		        "A: bInterfaceSubClass=00\\n\n"
		        "A: bInterfaceProtocol=00\\n\n"
		        "A: bNumEndpoints=%02x\\n\n",
		        d->syspath, d->bus, d->port, f->number, d->cfg.vid, d->cfg.pid,
		        d->cfg.release, cls, f->number, cls, f->cfg.no_interrupt ? 2u : 3u);

		if (!umockdev_testbed_add_from_string(e->tb, irec, &err)) {
			fprintf(stderr, "ccid_emu: add interface: %s\n", err ? err->message : "?");
			g_clear_error(&err);
			return false;
		}
	}
	return true;
}

static void
remove_records(ccid_emu_dev_t *d)
{
	ccid_emu_t *e = d->emu;

	/* umockdev 0.17 sends no "remove" uevent and leaves the interfaces'
	 * links: children first, each announced by hand. */
	for (unsigned i = 0; i < d->nifaces; i++) {
		g_autofree char *ipath = g_strdup_printf("/sys%s/%u-%u:1.%u", d->syspath, d->bus,
		                                         d->port, d->ifaces[i].number);

		umockdev_testbed_uevent(e->tb, ipath, "remove");
		umockdev_testbed_remove_device(e->tb, ipath);
	}
	{
		g_autofree char *dpath = g_strdup_printf("/sys%s", d->syspath);

		umockdev_testbed_uevent(e->tb, dpath, "remove");
		umockdev_testbed_remove_device(e->tb, dpath);
	}
}

/* --- usbfs ------------------------------------------------------------------------ */

static emu_iface_t *
iface_of_ep(ccid_emu_dev_t *d, uint8_t ep)
{
	for (unsigned i = 0; i < d->nifaces; i++) {
		emu_iface_t *f = &d->ifaces[i];

		if (ep == f->ep_out || ep == f->ep_in || (ep == f->ep_intr && f->ep_intr != 0))
			return f;
	}
	return NULL;
}

static emu_iface_t *
iface_of_number(ccid_emu_dev_t *d, unsigned number)
{
	for (unsigned i = 0; i < d->nifaces; i++)
		if (d->ifaces[i].number == number)
			return &d->ifaces[i];
	return NULL;
}

static void
urb_free(struct emu_urb *u)
{
	if (u->buf != NULL)
		g_object_unref(u->buf);
	g_object_unref(u->data);
	g_free(u);
}

static void
urb_finish(struct emu_urb *u, int status, int actual)
{
	u->urb->status = status;
	u->urb->actual_length = actual;
	u->done = true;
}

static size_t
string_desc(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 2;

	for (size_t i = 0; s[i] != '\0' && n + 2 <= cap && n + 2 <= 255; i++) {
		out[n++] = (uint8_t)s[i];
		out[n++] = 0;
	}
	out[0] = (uint8_t)n;
	out[1] = 0x03;
	return n;
}

/* A control transfer: the setup packet, then data. */
static void
control(ccid_emu_dev_t *d, struct emu_urb *u)
{
	uint8_t *b = u->buf->data, resp[256];
	size_t blen = (size_t)u->urb->buffer_length, n = 0;
	uint8_t rt, req;
	unsigned value, index, length;
	emu_iface_t *f;

	if (blen < 8) {
		urb_finish(u, -EINVAL, 0);
		return;
	}
	rt = b[0];
	req = b[1];
	value = b[2] | (unsigned)b[3] << 8;
	index = b[4] | (unsigned)b[5] << 8;
	length = b[6] | (unsigned)b[7] << 8;
	if (rt == 0x21 && req == TK_CCID_REQ_ABORT && (f = iface_of_number(d, index)) != NULL) {
		emu_abort_request(f, value & 0xFF, value >> 8);
		urb_finish(u, 0, 0);
		return;
	}
	if (rt == 0x80 && req == 0x06) { /* GET_DESCRIPTOR */
		unsigned type = value >> 8, idx = value & 0xFF;

		if (type == 0x01) {
			n = 18;
			memcpy(resp, d->desc, n);
		} else if (type == 0x02 && idx == 0) {
			n = d->desc_len - 18 > sizeof(resp) ? sizeof(resp) : d->desc_len - 18;
			memcpy(resp, d->desc + 18, n);
		} else if (type == 0x03 && idx == 0) {
			resp[0] = 4;
			resp[1] = 0x03;
			resp[2] = 0x09;
			resp[3] = 0x04;
			n = 4;
		} else if (type == 0x03 && idx >= 1 && idx <= 3) {
			const char *s = idx == 1   ? d->manufacturer
			                : idx == 2 ? d->product
			                           : d->serial;

			n = string_desc(s, resp, sizeof(resp));
		} else {
			urb_finish(u, -EPIPE, 0);
			return;
		}
	} else if (rt == 0x80 && req == 0x00) { /* GET_STATUS */
		resp[0] = resp[1] = 0;
		n = 2;
	} else if ((rt & 0x80) == 0 && (req == 0x01 || req == 0x03 || req == 0x09 || req == 0x0B)) {
		n = 0; /* CLEAR/SET_FEATURE, SET_CONFIGURATION, SET_INTERFACE */
	} else {
		urb_finish(u, -EPIPE, 0);
		return;
	}
	if (n > length)
		n = length;
	if (n > blen - 8)
		n = blen - 8;
	if ((rt & 0x80) && n > 0)
		memcpy(b + 8, resp, n);
	urb_finish(u, 0, (int)n);
}

/* Fill an IN URB from its queue, if something is due. */
static bool
fill_in(struct emu_urb *u)
{
	emu_iface_t *f = u->iface;
	bool intr = u->urb->endpoint == f->ep_intr && f->ep_intr != 0;
	GQueue *q = intr ? &f->intr_q : &f->bulk_q;
	emu_msg_t *m;
	size_t n, cap = (size_t)u->urb->buffer_length;

	if (!intr && f->halted_in) {
		urb_finish(u, -EPIPE, 0);
		return true;
	}
	if ((m = g_queue_peek_head(q)) == NULL || m->due_us > tk_now_us())
		return false;
	n = m->len - m->off;
	if (!intr && f->faults.split > 0 && n > f->faults.split)
		n = f->faults.split;
	if (n > cap) {
		/* the host's buffer is smaller than what we send: usbfs says so */
		memcpy(u->buf->data, m->data + m->off, cap);
		m->off += cap;
		urb_finish(u, -EOVERFLOW, (int)cap);
	} else {
		if (n > 0)
			memcpy(u->buf->data, m->data + m->off, n);
		m->off += n;
		urb_finish(u, 0, (int)n);
	}
	if (m->off >= m->len)
		emu_msg_free(g_queue_pop_head(q));
	return true;
}

static void
submit(ccid_emu_dev_t *d, UMockdevIoctlClient *client, UMockdevIoctlData *arg, unsigned gen)
{
	UMockdevIoctlData *data, *buf = NULL;
	struct usbdevfs_urb *urb;
	struct emu_urb *u;

	data = umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_urb), NULL);
	if (data == NULL) {
		umockdev_ioctl_client_complete(client, -1, EFAULT);
		return;
	}
	urb = (struct usbdevfs_urb *)data->data;
	if (urb->buffer_length > 0) {
		buf = umockdev_ioctl_data_resolve(data,
		                                  G_STRUCT_OFFSET(struct usbdevfs_urb, buffer),
		                                  (gsize)urb->buffer_length, NULL);
		if (buf == NULL) {
			umockdev_ioctl_client_complete(client, -1, EFAULT);
			return;
		}
		g_object_ref(buf);
	}
	u = g_new0(struct emu_urb, 1);
	u->client = client;
	u->gen = gen;
	u->data = g_object_ref(data);
	u->buf = buf;
	u->urb = urb;
	if (urb->type == USBDEVFS_URB_TYPE_CONTROL) {
		if (buf == NULL)
			urb_finish(u, -EINVAL, 0);
		else
			control(d, u);
	} else if (urb->type == USBDEVFS_URB_TYPE_BULK ||
	           urb->type == USBDEVFS_URB_TYPE_INTERRUPT) {
		u->iface = iface_of_ep(d, urb->endpoint);
		if (u->iface == NULL) {
			urb_free(u);
			umockdev_ioctl_client_complete(client, -1, ENOENT);
			return;
		}
		if ((urb->endpoint & 0x80) == 0) {
			if (u->iface->halted_out) {
				urb_finish(u, -EPIPE, 0);
			} else {
				emu_bulk_out(u->iface, buf ? buf->data : (const uint8_t *)"",
				             (size_t)urb->buffer_length);
				urb_finish(u, 0, urb->buffer_length);
			}
		}
	} else {
		urb_free(u);
		umockdev_ioctl_client_complete(client, -1, EINVAL);
		return;
	}
	d->urbs = g_list_append(d->urbs, u);
	umockdev_ioctl_client_complete(client, 0, 0);
}

/* Hand a finished URB back to its client. */
static void
reap_one(ccid_emu_dev_t *d, UMockdevIoctlClient *client, UMockdevIoctlData *arg,
         struct emu_urb *found)
{
	UMockdevIoctlData *ptr;

	d->urbs = g_list_remove(d->urbs, found);
	ptr = umockdev_ioctl_data_resolve(arg, 0, sizeof(gpointer), NULL);
	if (ptr == NULL || !umockdev_ioctl_data_set_ptr(ptr, 0, found->data)) {
		urb_free(found);
		umockdev_ioctl_client_complete(client, -1, EFAULT);
		return;
	}
	umockdev_ioctl_client_complete(client, 0, 0);
	urb_free(found);
}

static struct emu_urb *
done_urb(ccid_emu_dev_t *d, UMockdevIoctlClient *client)
{
	for (GList *l = d->urbs; l != NULL; l = l->next) {
		struct emu_urb *u = l->data;

		if (u->client == client && u->done)
			return u;
	}
	return NULL;
}

static void
reap(ccid_emu_dev_t *d, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	struct emu_urb *found = done_urb(d, client);

	for (GList *l = d->urbs; l != NULL && found == NULL; l = l->next) {
		struct emu_urb *u = l->data;

		if (u->client == client && !u->done && u->iface != NULL && fill_in(u))
			found = u;
	}
	if (found == NULL) {
		/* The node is a plain file, so poll() is always ready and
		 * libusb reaps in a loop: slow it down. */
		g_mutex_unlock(&d->emu->lock);
		g_usleep(1000);
		g_mutex_lock(&d->emu->lock);
		umockdev_ioctl_client_complete(client, -1, EAGAIN);
		return;
	}
	reap_one(d, client, arg, found);
}

static void
discard(ccid_emu_dev_t *d, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	gulong addr = (gulong) * (void **)arg->data;

	for (GList *l = d->urbs; l != NULL; l = l->next) {
		struct emu_urb *u = l->data;

		if (u->client == client && u->data->client_addr == addr && !u->done) {
			urb_finish(u, -ENOENT, 0);
			umockdev_ioctl_client_complete(client, 0, 0);
			return;
		}
	}
	umockdev_ioctl_client_complete(client, -1, EINVAL);
}

static bool
get_uint(UMockdevIoctlData *arg, unsigned *v)
{
	UMockdevIoctlData *p = umockdev_ioctl_data_resolve(arg, 0, sizeof(unsigned int), NULL);

	if (p == NULL)
		return false;
	memcpy(v, p->data, sizeof(*v));
	return true;
}

static void
claim(ccid_emu_dev_t *d, UMockdevIoctlClient *client, unsigned number, bool release)
{
	emu_iface_t *f = iface_of_number(d, number);

	if (f == NULL) {
		umockdev_ioctl_client_complete(client, -1, EINVAL);
		return;
	}
	if (release) {
		if (f->claimed_by == client)
			f->claimed_by = NULL;
		umockdev_ioctl_client_complete(client, 0, 0);
		return;
	}
	if (f->claimed_by != NULL && f->claimed_by != client) {
		umockdev_ioctl_client_complete(client, -1, EBUSY);
		return;
	}
	f->claimed_by = client;
	f->counts.claims++;
	umockdev_ioctl_client_complete(client, 0, 0);
}

/* The card answers on umockdev's ioctl thread and draws random numbers
 * there, so OpenSSL keeps per-thread state (DRBGs) for it. OpenSSL frees
 * that from a thread-exit destructor, which can still be running when the
 * test process exits; the leak checker then reports it. Before the testbed
 * goes, each such thread is asked to drop its OpenSSL state. */
static void
note_ioctl_thread(ccid_emu_t *e)
{
	GMainContext *ctx = g_main_context_get_thread_default();

	if (ctx != NULL && g_list_find(e->ioctl_ctxs, ctx) == NULL)
		e->ioctl_ctxs = g_list_prepend(e->ioctl_ctxs, g_main_context_ref(ctx));
}

struct thread_stop {
	GMutex lock;
	GCond cond;
	bool done;
};

static void
thread_stop_clear(gpointer p)
{
	struct thread_stop *ts = p;

	g_mutex_clear(&ts->lock);
	g_cond_clear(&ts->cond);
}

/* Runs on the ioctl thread; shares ts with the waiter (reference counted,
 * so a waiter that gave up leaves nothing dangling). */
static gboolean
thread_stop_cb(gpointer user)
{
	struct thread_stop *ts = user;

	OPENSSL_thread_stop();
	g_mutex_lock(&ts->lock);
	ts->done = true;
	g_cond_signal(&ts->cond);
	g_mutex_unlock(&ts->lock);
	g_atomic_rc_box_release_full(ts, thread_stop_clear);
	return G_SOURCE_REMOVE;
}

/* Bounded: a thread that no longer runs its loop costs 2 s, not a hang. */
static void
stop_ioctl_threads(ccid_emu_t *e)
{
	while (e->ioctl_ctxs != NULL) {
		GMainContext *ctx = e->ioctl_ctxs->data;
		struct thread_stop *ts = g_atomic_rc_box_new0(struct thread_stop);
		gint64 end = g_get_monotonic_time() + 2 * G_TIME_SPAN_SECOND;
		bool done;

		g_mutex_init(&ts->lock);
		g_cond_init(&ts->cond);
		g_main_context_invoke(ctx, thread_stop_cb, g_atomic_rc_box_acquire(ts));
		g_mutex_lock(&ts->lock);
		while (!ts->done && g_cond_wait_until(&ts->cond, &ts->lock, end))
			;
		done = ts->done;
		g_mutex_unlock(&ts->lock);
		g_atomic_rc_box_release_full(ts, thread_stop_clear);
		if (!done)
			fprintf(stderr, "ccid_emu: an ioctl thread did not answer\n");
		g_main_context_unref(ctx);
		e->ioctl_ctxs = g_list_delete_link(e->ioctl_ctxs, e->ioctl_ctxs);
	}
}

static gboolean
handle_ioctl(UMockdevIoctlBase *handler, UMockdevIoctlClient *client, gpointer user)
{
	struct emu_plug *plug = user;
	ccid_emu_dev_t *d = plug->dev;
	ccid_emu_t *e = d->emu;
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	gulong req = umockdev_ioctl_client_get_request(client);
	unsigned v = 0;

	(void)handler;
	g_mutex_lock(&e->lock);
	note_ioctl_thread(e);
	if (d->gone || plug->gen != (unsigned)d->devnum) {
		struct emu_urb *u;

		/* As usbfs after a disconnect (USBDEVFS_CAP_REAP_AFTER_DISCONNECT):
		 * the URBs that ended with it can still be reaped, so a
		 * transfer that was under way returns with ENODEV instead of
		 * waiting for ever; everything else fails. */
		if ((req == USBDEVFS_REAPURB || req == USBDEVFS_REAPURBNDELAY) &&
		    (u = done_urb(d, client)) != NULL)
			reap_one(d, client, arg, u);
		else
			umockdev_ioctl_client_complete(client, -1, ENODEV);
		goto out;
	}
	switch (req) {
	case USBDEVFS_GET_CAPABILITIES: {
		UMockdevIoctlData *p = umockdev_ioctl_data_resolve(arg, 0, sizeof(guint32), NULL);
		guint32 caps = USBDEVFS_CAP_BULK_CONTINUATION | USBDEVFS_CAP_NO_PACKET_SIZE_LIM |
		               USBDEVFS_CAP_REAP_AFTER_DISCONNECT | USBDEVFS_CAP_ZERO_PACKET;

		if (p != NULL)
			memcpy(p->data, &caps, sizeof(caps));
		umockdev_ioctl_client_complete(client, p ? 0 : -1, p ? 0 : EFAULT);
		break;
	}
	case USBDEVFS_CLAIMINTERFACE:
	case USBDEVFS_RELEASEINTERFACE:
		if (!get_uint(arg, &v))
			umockdev_ioctl_client_complete(client, -1, EFAULT);
		else
			claim(d, client, v, req == USBDEVFS_RELEASEINTERFACE);
		break;
	case USBDEVFS_DISCONNECT_CLAIM: {
		UMockdevIoctlData *p = umockdev_ioctl_data_resolve(
		        arg, 0, sizeof(struct usbdevfs_disconnect_claim), NULL);

		if (p == NULL)
			umockdev_ioctl_client_complete(client, -1, EFAULT);
		else
			claim(d, client, ((struct usbdevfs_disconnect_claim *)p->data)->interface,
			      false);
		break;
	}
	case USBDEVFS_GETDRIVER:
	case USBDEVFS_IOCTL:
		umockdev_ioctl_client_complete(client, -1, ENODATA); /* no kernel driver */
		break;
	case USBDEVFS_SETINTERFACE:
	case USBDEVFS_SETCONFIGURATION:
	case USBDEVFS_RESETEP:
		umockdev_ioctl_client_complete(client, 0, 0);
		break;
	case USBDEVFS_CONNECTINFO: {
		UMockdevIoctlData *p = umockdev_ioctl_data_resolve(
		        arg, 0, sizeof(struct usbdevfs_connectinfo), NULL);

		if (p != NULL) {
			struct usbdevfs_connectinfo ci = {.devnum = d->devnum, .slow = 0};

			memcpy(p->data, &ci, sizeof(ci));
		}
		umockdev_ioctl_client_complete(client, p ? 0 : -1, p ? 0 : EFAULT);
		break;
	}
	case USBDEVFS_CLEAR_HALT:
		if (!get_uint(arg, &v)) {
			umockdev_ioctl_client_complete(client, -1, EFAULT);
			break;
		}
		for (unsigned i = 0; i < d->nifaces; i++) {
			emu_iface_t *f = &d->ifaces[i];

			if (v == f->ep_out) {
				f->halted_out = false;
				f->faults.stall_out = false;
				f->counts.clear_halt_out++;
			} else if (v == f->ep_in) {
				f->halted_in = false;
				f->faults.stall_in = false;
				f->counts.clear_halt_in++;
			} else if (v == f->ep_intr && f->ep_intr != 0) {
				f->counts.clear_halt_intr++;
			}
		}
		umockdev_ioctl_client_complete(client, 0, 0);
		break;
	case USBDEVFS_RESET:
		for (unsigned i = 0; i < d->nifaces; i++) {
			d->ifaces[i].counts.resets++;
			emu_iface_reset(&d->ifaces[i]);
		}
		/* A reset kills what was in flight. */
		for (GList *l = d->urbs; l != NULL; l = l->next) {
			struct emu_urb *u = l->data;

			if (!u->done && u->client == client)
				urb_finish(u, -ENOENT, 0);
		}
		umockdev_ioctl_client_complete(client, 0, 0);
		break;
	case USBDEVFS_SUBMITURB:
		submit(d, client, arg, plug->gen);
		break;
	case USBDEVFS_REAPURB:
	case USBDEVFS_REAPURBNDELAY:
		reap(d, client, arg);
		break;
	case USBDEVFS_DISCARDURB:
		discard(d, client, arg);
		break;
	default:
		fprintf(stderr, "ccid_emu: %s: unhandled ioctl %lx\n", d->devnode, req);
		g_mutex_unlock(&e->lock);
		return FALSE;
	}
out:
	g_mutex_unlock(&e->lock);
	return TRUE;
}

static void
client_vanished(UMockdevIoctlBase *handler, UMockdevIoctlClient *client, gpointer user)
{
	struct emu_plug *plug = user;
	ccid_emu_dev_t *d = plug->dev;
	GList *l, *next;

	(void)handler;
	g_mutex_lock(&d->emu->lock);
	for (unsigned i = 0; i < d->nifaces; i++)
		if (d->ifaces[i].claimed_by == client)
			d->ifaces[i].claimed_by = NULL;
	for (l = d->urbs; l != NULL; l = next) {
		struct emu_urb *u = l->data;

		next = l->next;
		if (u->client == client) {
			d->urbs = g_list_delete_link(d->urbs, l);
			urb_free(u);
		}
	}
	g_mutex_unlock(&d->emu->lock);
}

/* --- devices ---------------------------------------------------------------------- */

static bool
plug_in(ccid_emu_dev_t *d)
{
	ccid_emu_t *e = d->emu;
	struct emu_plug *plug;
	GError *err = NULL;

	d->devnum = e->next_devnum++;
	snprintf(d->devnode, sizeof(d->devnode), "/dev/bus/usb/%03u/%03u", d->bus, d->devnum);
	plug = g_new0(struct emu_plug, 1);
	plug->dev = d;
	plug->gen = d->devnum;
	if (d->handler != NULL)
		g_object_unref(d->handler);
	d->handler = umockdev_ioctl_base_new();
	g_signal_connect_data(d->handler, "handle-ioctl", G_CALLBACK(handle_ioctl), plug,
	                      (GClosureNotify)(void (*)(void))g_free, 0);
	g_signal_connect(d->handler, "client-vanished", G_CALLBACK(client_vanished), plug);
	/* The handler first: a client may open the node on the "add" uevent. */
	if (!umockdev_testbed_attach_ioctl(e->tb, d->devnode, d->handler, &err)) {
		fprintf(stderr, "ccid_emu: attach ioctl: %s\n", err ? err->message : "?");
		g_clear_error(&err);
		return false;
	}
	d->gone = false;
	return add_records(d);
}

ccid_emu_dev_t *
ccid_emu_add(ccid_emu_t *e, const ccid_emu_dev_cfg_t *cfg)
{
	ccid_emu_dev_t *d;
	bool ok;

	if (e == NULL || cfg == NULL || cfg->ninterfaces < 1 || cfg->ninterfaces > EMU_MAX_IFACES)
		return NULL;
	d = g_new0(ccid_emu_dev_t, 1);
	d->emu = e;
	d->cfg = *cfg;
	snprintf(d->manufacturer, sizeof(d->manufacturer), "%s",
	         cfg->manufacturer ? cfg->manufacturer : "tokenkit");
	snprintf(d->product, sizeof(d->product), "%s",
	         cfg->product ? cfg->product : "Emulated CCID Reader");
	snprintf(d->serial, sizeof(d->serial), "%s", cfg->serial ? cfg->serial : "");
	d->cfg.manufacturer = d->cfg.product = d->cfg.serial = NULL;
	d->bus = EMU_BUS;
	d->nifaces = cfg->ninterfaces;
	g_mutex_lock(&e->lock);
	d->port = e->next_port++;
	snprintf(d->syspath, sizeof(d->syspath), "/devices/pci0000:00/0000:00:14.0/usb%u/%u-%u",
	         d->bus, d->bus, d->port);
	for (unsigned i = 0; i < d->nifaces; i++) {
		emu_iface_t *f = &d->ifaces[i];

		f->dev = d;
		f->index = i;
		f->cfg = cfg->iface[i];
		f->number = (uint8_t)i;
		f->ep_out = (uint8_t)(0x01 + 3 * i);
		f->ep_in = (uint8_t)(0x82 + 3 * i);
		f->ep_intr = f->cfg.no_interrupt ? 0 : (uint8_t)(0x83 + 3 * i);
		emu_iface_init(f);
	}
	build_descriptors(d);
	ok = plug_in(d);
	if (ok)
		e->devs = g_list_append(e->devs, d);
	g_mutex_unlock(&e->lock);
	if (!ok) {
		for (unsigned i = 0; i < d->nifaces; i++)
			emu_iface_clear(&d->ifaces[i]);
		g_free(d);
		return NULL;
	}
	return d;
}

void
ccid_emu_address(const ccid_emu_dev_t *d, unsigned *bus, unsigned *devnum)
{
	*bus = d->bus;
	*devnum = d->devnum;
}

void
ccid_emu_unplug(ccid_emu_dev_t *d)
{
	g_mutex_lock(&d->emu->lock);
	if (!d->gone) {
		d->gone = true;
		for (GList *l = d->urbs; l != NULL; l = l->next) {
			struct emu_urb *u = l->data;

			if (!u->done)
				urb_finish(u, -ENODEV, 0);
		}
		remove_records(d);
		for (unsigned i = 0; i < d->nifaces; i++)
			d->ifaces[i].claimed_by = NULL;
	}
	g_mutex_unlock(&d->emu->lock);
}

void
ccid_emu_replug(ccid_emu_dev_t *d)
{
	g_mutex_lock(&d->emu->lock);
	if (d->gone) {
		for (unsigned i = 0; i < d->nifaces; i++)
			emu_iface_reset(&d->ifaces[i]);
		if (!plug_in(d))
			fprintf(stderr, "ccid_emu: replug failed\n");
	}
	g_mutex_unlock(&d->emu->lock);
}

static emu_iface_t *
iface(ccid_emu_dev_t *d, unsigned i)
{
	return i < d->nifaces ? &d->ifaces[i] : &d->ifaces[0];
}

void
ccid_emu_insert(ccid_emu_dev_t *d, unsigned i, unsigned slot, const ccid_emu_card_t *card,
                bool notify)
{
	emu_iface_t *f = iface(d, i);

	g_mutex_lock(&d->emu->lock);
	if (slot < f->cfg.nslots) {
		f->slots[slot].card = *card;
		f->slots[slot].present = true;
		f->slots[slot].powered = false;
		if (notify)
			emu_notify_slots(f, slot);
	}
	g_mutex_unlock(&d->emu->lock);
}

void
ccid_emu_remove_card(ccid_emu_dev_t *d, unsigned i, unsigned slot, bool notify)
{
	emu_iface_t *f = iface(d, i);

	g_mutex_lock(&d->emu->lock);
	if (slot < f->cfg.nslots) {
		emu_slot_t *s = &f->slots[slot];

		if (s->powered && s->card.power_off != NULL)
			s->card.power_off(s->card.ctx);
		s->present = false;
		s->powered = false;
		if (notify)
			emu_notify_slots(f, slot);
	}
	g_mutex_unlock(&d->emu->lock);
}

void
ccid_emu_set_atr(ccid_emu_dev_t *d, unsigned i, unsigned slot, const uint8_t *atr, size_t len)
{
	emu_iface_t *f = iface(d, i);

	g_mutex_lock(&d->emu->lock);
	if (slot < f->cfg.nslots && len <= sizeof(f->slots[slot].atr_override)) {
		if (len > 0)
			memcpy(f->slots[slot].atr_override, atr, len);
		f->slots[slot].atr_override_len = len;
	}
	g_mutex_unlock(&d->emu->lock);
}

void
ccid_emu_set_faults(ccid_emu_dev_t *d, unsigned i, const ccid_emu_faults_t *flt)
{
	emu_iface_t *f = iface(d, i);

	g_mutex_lock(&d->emu->lock);
	f->faults = *flt;
	f->halted_out = flt->stall_out;
	f->halted_in = flt->stall_in;
	f->wedged_abort = flt->wedge_abort;
	f->wedged_reset = flt->wedge_reset;
	g_mutex_unlock(&d->emu->lock);
}

void
ccid_emu_hw_error(ccid_emu_dev_t *d, unsigned i, unsigned slot, uint8_t code)
{
	emu_iface_t *f = iface(d, i);
	uint8_t m[4] = {TK_CCID_RDR_HARDWARE_ERROR, (uint8_t)slot, 0, code};

	g_mutex_lock(&d->emu->lock);
	emu_intr(f, m, sizeof(m));
	g_mutex_unlock(&d->emu->lock);
}

void
ccid_emu_pin_input(ccid_emu_dev_t *d, unsigned i, enum ccid_emu_pin_action action, const char *pin,
                   const char *new_pin)
{
	emu_iface_t *f = iface(d, i);

	g_mutex_lock(&d->emu->lock);
	f->pin_action = action;
	snprintf(f->pin, sizeof(f->pin), "%s", pin ? pin : "");
	snprintf(f->new_pin, sizeof(f->new_pin), "%s", new_pin ? new_pin : "");
	f->confirm_pin[0] = '\0';
	g_mutex_unlock(&d->emu->lock);
}

void
ccid_emu_pin_confirm(ccid_emu_dev_t *d, unsigned i, const char *confirm)
{
	emu_iface_t *f = iface(d, i);

	g_mutex_lock(&d->emu->lock);
	snprintf(f->confirm_pin, sizeof(f->confirm_pin), "%s", confirm ? confirm : "");
	g_mutex_unlock(&d->emu->lock);
}

size_t
ccid_emu_last_pin_apdu(ccid_emu_dev_t *d, unsigned i, uint8_t *out, size_t cap)
{
	emu_iface_t *f = iface(d, i);
	size_t n;

	g_mutex_lock(&d->emu->lock);
	n = f->last_pin_apdu_len < cap ? f->last_pin_apdu_len : cap;
	memcpy(out, f->last_pin_apdu, n);
	g_mutex_unlock(&d->emu->lock);
	return n;
}

void
ccid_emu_counts(ccid_emu_dev_t *d, unsigned i, ccid_emu_counts_t *out)
{
	g_mutex_lock(&d->emu->lock);
	*out = iface(d, i)->counts;
	g_mutex_unlock(&d->emu->lock);
}

void
ccid_emu_reset_counts(ccid_emu_dev_t *d, unsigned i)
{
	g_mutex_lock(&d->emu->lock);
	memset(&iface(d, i)->counts, 0, sizeof(ccid_emu_counts_t));
	g_mutex_unlock(&d->emu->lock);
}

/* --- the testbed --------------------------------------------------------------------- */

ccid_emu_t *
ccid_emu_new(void)
{
	ccid_emu_t *e = g_new0(ccid_emu_t, 1);

	g_mutex_init(&e->lock);
	e->next_devnum = 2;
	e->next_port = 1;
	e->tb = umockdev_testbed_new();
	if (e->tb == NULL) {
		fprintf(stderr, "ccid_emu: no testbed\n");
		g_free(e);
		return NULL;
	}
	e->root = umockdev_testbed_get_root_dir(e->tb);
	return e;
}

const char *
ccid_emu_root(const ccid_emu_t *e)
{
	return e->root;
}

void
ccid_emu_free(ccid_emu_t **ep)
{
	ccid_emu_t *e;

	if (ep == NULL || (e = *ep) == NULL)
		return;
	*ep = NULL;
	for (GList *l = e->devs; l != NULL; l = l->next) {
		ccid_emu_dev_t *d = l->data;

		g_mutex_lock(&e->lock);
		if (!d->gone) {
			d->gone = true;
			remove_records(d);
		}
		while (d->urbs != NULL) {
			urb_free(d->urbs->data);
			d->urbs = g_list_delete_link(d->urbs, d->urbs);
		}
		for (unsigned i = 0; i < d->nifaces; i++)
			emu_iface_clear(&d->ifaces[i]);
		g_mutex_unlock(&e->lock);
	}
	stop_ioctl_threads(e);
	g_clear_object(&e->tb);
	for (GList *l = e->devs; l != NULL; l = l->next) {
		ccid_emu_dev_t *d = l->data;

		if (d->handler != NULL)
			g_object_unref(d->handler);
		g_free(d);
	}
	g_list_free(e->devs);
	g_free(e->root);
	if (getenv("TK_CCID_EMU_TMP") != NULL)
		(void)rmdir(getenv("TK_CCID_EMU_TMP")); /* ours, and empty by now */
	g_mutex_clear(&e->lock);
	g_free(e);
}

/* umockdev's sockets live in the testbed, under $TMPDIR: a long build path
 * there runs past the 108 bytes of a UNIX socket name (the testbed then
 * fails in odd ways). Such a TMPDIR is traded for a short directory of our
 * own, removed by ccid_emu_free. */
#define EMU_TMPDIR_MAX 40

static void
short_tmpdir(void)
{
	const char *t = getenv("TMPDIR");
	char d[] = "/tmp/tkccid.XXXXXX";

	if (getenv("TK_CCID_EMU_TMP") != NULL || t == NULL || strlen(t) <= EMU_TMPDIR_MAX)
		return;
	if (mkdtemp(d) == NULL)
		return;
	setenv("TMPDIR", d, 1);
	setenv("TK_CCID_EMU_TMP", d, 1);
}

void
ccid_emu_reexec(int argc, char **argv)
{
	const char *pre = getenv("LD_PRELOAD");
	g_autofree char *wrapper = NULL;
	char *newpre;

	(void)argc;
	short_tmpdir();
	if (pre != NULL && strstr(pre, "libumockdev-preload") != NULL)
		return;
	wrapper = g_find_program_in_path("umockdev-wrapper");
	if (wrapper == NULL) {
		fprintf(stderr, "%s: umockdev is not installed (umockdev-wrapper): skipped\n",
		        argv[0]);
		exit(77);
	}
	if (getenv("TK_CCID_EMU_REEXEC") != NULL) {
		fprintf(stderr, "%s: still not preloaded after re-exec\n", argv[0]);
		exit(1);
	}
	setenv("TK_CCID_EMU_REEXEC", "1", 1);
	/* After whatever is preloaded already: an ASan runtime must come
	 * first (CCID-TESTING.md). */
	if (pre != NULL && *pre != '\0')
		newpre = g_strdup_printf("%s:libumockdev-preload.so.0", pre);
	else
		newpre = g_strdup("libumockdev-preload.so.0");
	setenv("LD_PRELOAD", newpre, 1);
	g_free(newpre);
	execv("/proc/self/exe", argv);
	fprintf(stderr, "%s: re-exec: %s\n", argv[0], strerror(errno));
	exit(1);
}
