/* tokenkit CCID: the libusb transport. Discovery, open/claim, transfers
 * with deadlines, the interrupt pipe, and the USB-level recovery
 * primitives (CLEAR_HALT, port reset, reopen after a replug).
 *
 * This is the one file that talks to libusb; libusb error codes become
 * tk_err here (tk_ccid_err_from_libusb) and nowhere else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "ccid_int.h"
#include "clock.h"

#define EVT_SLICE_MS 100  /* interrupt waits are cut in slices to notice evt_stop */
#define REOPEN_POLL_MS 50 /* how often reopen looks for the device again */

int
tk_ccid_err_from_libusb(int rv)
{
	switch (rv) {
	case LIBUSB_SUCCESS:
		return TK_OK;
	case LIBUSB_ERROR_TIMEOUT:
		return TK_ERR_TIMEOUT;
	case LIBUSB_ERROR_NO_DEVICE:
	case LIBUSB_ERROR_NOT_FOUND:
		return TK_ERR_READER_GONE;
	case LIBUSB_ERROR_BUSY:
		return TK_ERR_SHARING;
	case LIBUSB_ERROR_NO_MEM:
		return TK_ERR_NO_MEMORY;
	case LIBUSB_ERROR_INTERRUPTED:
		return TK_ERR_CANCELLED;
	case LIBUSB_ERROR_OVERFLOW:
		return TK_ERR_COMM;
	case LIBUSB_ERROR_NOT_SUPPORTED:
		return TK_ERR_NOT_SUPPORTED;
	case LIBUSB_ERROR_INVALID_PARAM:
		return TK_ERR_INVALID_ARG;
	default: /* IO, PIPE, ACCESS, OTHER */
		return TK_ERR_IO;
	}
}

static enum tk_ccid_fault
fault_of(int rv)
{
	switch (rv) {
	case LIBUSB_SUCCESS:
		return TK_CCID_FAULT_NONE;
	case LIBUSB_ERROR_TIMEOUT:
		return TK_CCID_FAULT_TIMEOUT;
	case LIBUSB_ERROR_PIPE:
		return TK_CCID_FAULT_STALL;
	case LIBUSB_ERROR_NO_DEVICE:
	case LIBUSB_ERROR_NOT_FOUND:
		return TK_CCID_FAULT_GONE;
	case LIBUSB_ERROR_OVERFLOW:
		return TK_CCID_FAULT_GARBAGE;
	default:
		return TK_CCID_FAULT_OTHER;
	}
}

const char *
tk_ccid_fault_name(enum tk_ccid_fault f)
{
	switch (f) {
	case TK_CCID_FAULT_NONE:
		return "none";
	case TK_CCID_FAULT_TIMEOUT:
		return "timeout";
	case TK_CCID_FAULT_STALL:
		return "endpoint halted";
	case TK_CCID_FAULT_GARBAGE:
		return "garbage";
	case TK_CCID_FAULT_SEQUENCE:
		return "wrong sequence";
	case TK_CCID_FAULT_GONE:
		return "device gone";
	default:
		return "other";
	}
}

void
tk_ccid_set_fault(tk_ccid_dev_t *d, enum tk_ccid_fault f)
{
	atomic_store(&d->fault, (int)f);
}

enum tk_ccid_fault
tk_ccid_last_fault(const tk_ccid_dev_t *d)
{
	return d != NULL ? (enum tk_ccid_fault)atomic_load(&d->fault) : TK_CCID_FAULT_NONE;
}

void
tk_ccid_timeouts_default(tk_ccid_timeouts_t *t)
{
	if (t == NULL)
		return;
	t->write_ms = 5000;
	t->read_ms = 10000;
	t->control_ms = 2000;
	t->command_ms = 120000;
	t->max_time_ext = 600;
	t->max_stale = 16;
	t->pin_ms = 60000;
}

/* --- discovery ------------------------------------------------------------- */

/* libusb parses the configuration and keeps class descriptors as "extra"
 * bytes of the configuration, interface or endpoint they follow. Writing
 * the tree back out in order gives the bytes the device sent, for the one
 * walk in descriptor.c. */
static size_t
config_size(const struct libusb_config_descriptor *c)
{
	size_t n = 9 + (size_t)c->extra_length;

	for (int i = 0; i < c->bNumInterfaces; i++) {
		const struct libusb_interface *itf = &c->interface[i];

		for (int a = 0; a < itf->num_altsetting; a++) {
			const struct libusb_interface_descriptor *id = &itf->altsetting[a];

			n += 9 + (size_t)id->extra_length;
			for (int e = 0; e < id->bNumEndpoints; e++)
				n += 7 + (size_t)id->endpoint[e].extra_length;
		}
	}
	return n;
}

static int
config_bytes(const struct libusb_config_descriptor *c, uint8_t *out, size_t cap)
{
	tk_wbuf_t w;

	if (cap > UINT16_MAX)
		return TK_ERR_TOO_LONG;
	tk_wbuf_init(&w, out, cap);
	tk_wbuf_put_u8(&w, 9);
	tk_wbuf_put_u8(&w, LIBUSB_DT_CONFIG);
	tk_wbuf_put_u16le(&w, (uint16_t)cap);
	tk_wbuf_put_u8(&w, c->bNumInterfaces);
	tk_wbuf_put_u8(&w, c->bConfigurationValue);
	tk_wbuf_put_u8(&w, c->iConfiguration);
	tk_wbuf_put_u8(&w, c->bmAttributes);
	tk_wbuf_put_u8(&w, c->MaxPower);
	tk_wbuf_put_bytes(&w, c->extra, (size_t)c->extra_length);
	for (int i = 0; i < c->bNumInterfaces; i++) {
		const struct libusb_interface *itf = &c->interface[i];

		for (int a = 0; a < itf->num_altsetting; a++) {
			const struct libusb_interface_descriptor *id = &itf->altsetting[a];

			tk_wbuf_put_u8(&w, 9);
			tk_wbuf_put_u8(&w, LIBUSB_DT_INTERFACE);
			tk_wbuf_put_u8(&w, id->bInterfaceNumber);
			tk_wbuf_put_u8(&w, id->bAlternateSetting);
			tk_wbuf_put_u8(&w, id->bNumEndpoints);
			tk_wbuf_put_u8(&w, id->bInterfaceClass);
			tk_wbuf_put_u8(&w, id->bInterfaceSubClass);
			tk_wbuf_put_u8(&w, id->bInterfaceProtocol);
			tk_wbuf_put_u8(&w, id->iInterface);
			tk_wbuf_put_bytes(&w, id->extra, (size_t)id->extra_length);
			for (int e = 0; e < id->bNumEndpoints; e++) {
				const struct libusb_endpoint_descriptor *ep = &id->endpoint[e];

				tk_wbuf_put_u8(&w, 7);
				tk_wbuf_put_u8(&w, LIBUSB_DT_ENDPOINT);
				tk_wbuf_put_u8(&w, ep->bEndpointAddress);
				tk_wbuf_put_u8(&w, ep->bmAttributes);
				tk_wbuf_put_u16le(&w, ep->wMaxPacketSize);
				tk_wbuf_put_u8(&w, ep->bInterval);
				tk_wbuf_put_bytes(&w, ep->extra, (size_t)ep->extra_length);
			}
		}
	}
	return tk_wbuf_error(&w);
}

int
tk_ccid_probe(libusb_device *dev, tk_ccid_found_t *out, size_t cap, size_t *count)
{
	struct libusb_device_descriptor dd;
	struct libusb_config_descriptor *cfg = NULL;
	tk_ccid_iface_t ifs[8];
	tk_ccid_found_t base;
	uint8_t *raw = NULL;
	size_t n, found = 0;
	int r, rv;

	if (count != NULL)
		*count = 0;
	if (out != NULL && cap > 0)
		memset(out, 0, cap * sizeof(*out));
	if (dev == NULL || count == NULL || (out == NULL && cap > 0))
		return TK_ERR_INVALID_ARG;
	if ((rv = libusb_get_device_descriptor(dev, &dd)) != LIBUSB_SUCCESS)
		return tk_ccid_err_from_libusb(rv);
	/* CCID lives on interfaces; a device class of its own (hubs, ...)
	 * other than "per interface" or "vendor" never carries one. */
	if (dd.bDeviceClass != LIBUSB_CLASS_PER_INTERFACE &&
	    dd.bDeviceClass != LIBUSB_CLASS_VENDOR_SPEC && dd.bDeviceClass != 0xEF)
		return TK_OK;
	/* The active configuration; a device that is not configured yet has
	 * none, and its first one is what it will get. */
	rv = libusb_get_active_config_descriptor(dev, &cfg);
	if (rv == LIBUSB_ERROR_NOT_FOUND)
		rv = libusb_get_config_descriptor(dev, 0, &cfg);
	if (rv != LIBUSB_SUCCESS)
		return tk_ccid_err_from_libusb(rv);
	n = config_size(cfg);
	if ((raw = malloc(n)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = config_bytes(cfg, raw, n)) != TK_OK)
		goto out;
	memset(&base, 0, sizeof(base));
	base.id.vid = dd.idVendor;
	base.id.pid = dd.idProduct;
	base.id.release = dd.bcdDevice;
	base.bus = libusb_get_bus_number(dev);
	base.addr = libusb_get_device_address(dev);
	rv = libusb_get_port_numbers(dev, base.ports, TK_CCID_MAX_PORTS);
	base.nports = rv > 0 ? (uint8_t)rv : 0;
	base.str_manufacturer = dd.iManufacturer;
	base.str_product = dd.iProduct;
	base.str_serial = dd.iSerialNumber;
	if ((r = tk_ccid_config_parse(raw, n, &base.id, ifs, sizeof(ifs) / sizeof(ifs[0]),
	                              &found)) != TK_OK) {
		tk_log_debug("ccid: %04x:%04x: configuration: %s", dd.idVendor, dd.idProduct,
		             tk_strerror(r));
		r = TK_OK; /* not a reader we can use; not an error of the scan */
		found = 0;
		goto out;
	}
	if (found > sizeof(ifs) / sizeof(ifs[0]))
		found = sizeof(ifs) / sizeof(ifs[0]);
	for (size_t i = 0; i < found && i < cap; i++) {
		out[i] = base;
		out[i].iface = ifs[i];
	}
	*count = found;
	r = TK_OK;
out:
	free(raw);
	libusb_free_config_descriptor(cfg);
	return r;
}

int
tk_ccid_scan(libusb_context *ctx, tk_ccid_found_t **out, size_t *count)
{
	libusb_device **list = NULL;
	tk_ccid_found_t *all = NULL;
	size_t n = 0, cap = 0;
	ssize_t ndev;
	int r = TK_OK;

	if (out != NULL)
		*out = NULL;
	if (count != NULL)
		*count = 0;
	if (out == NULL || count == NULL)
		return TK_ERR_INVALID_ARG;
	ndev = libusb_get_device_list(ctx, &list);
	if (ndev < 0)
		return tk_ccid_err_from_libusb((int)ndev);
	for (ssize_t i = 0; i < ndev; i++) {
		tk_ccid_found_t one[8];
		size_t k = 0;

		if (tk_ccid_probe(list[i], one, 8, &k) != TK_OK || k == 0)
			continue;
		if (k > 8)
			k = 8;
		if (n + k > cap) {
			size_t ncap = (n + k) * 2;
			tk_ccid_found_t *p = realloc(all, ncap * sizeof(*p));

			if (p == NULL) {
				r = TK_ERR_NO_MEMORY;
				goto out;
			}
			all = p;
			cap = ncap;
		}
		memcpy(all + n, one, k * sizeof(*one));
		n += k;
	}
out:
	libusb_free_device_list(list, 1);
	if (r != TK_OK) {
		free(all);
		return r;
	}
	*out = all;
	*count = n;
	return TK_OK;
}

/* --- open / close ------------------------------------------------------------ */

static void
read_string(libusb_device_handle *h, uint8_t index, char *out, size_t cap)
{
	unsigned char buf[128];
	int n;

	out[0] = '\0';
	if (index == 0)
		return;
	n = libusb_get_string_descriptor_ascii(h, index, buf, sizeof(buf));
	if (n <= 0)
		return;
	/* Printable ASCII only: these strings end up in logs and names. */
	for (int i = 0; i < n; i++)
		if (buf[i] < 0x20 || buf[i] > 0x7E)
			buf[i] = '?';
	snprintf(out, cap, "%.*s", n, (const char *)buf);
}

static libusb_device *find_device(libusb_context *ctx, const tk_ccid_found_t *f,
                                  libusb_device ***listp);

/* "Manufacturer Product" (or "USB vvvv:pppp" without either) and the
 * serial number, from the string descriptors of an open handle. */
static void
read_names(libusb_device_handle *h, const tk_ccid_found_t *f, char *product, size_t pcap,
           char *serial, size_t scap)
{
	char man[64], prod[64];

	read_string(h, f->str_manufacturer, man, sizeof(man));
	read_string(h, f->str_product, prod, sizeof(prod));
	read_string(h, f->str_serial, serial, scap);
	if (man[0] == '\0' && prod[0] == '\0')
		snprintf(man, sizeof(man), "USB %04x:%04x", f->id.vid, f->id.pid);
	snprintf(product, pcap, "%s%s%s", man, man[0] && prod[0] ? " " : "", prod);
}

int
tk_ccid_port_path(const tk_ccid_found_t *f, char *out, size_t cap)
{
	size_t p;

	if (f == NULL || out == NULL || cap == 0)
		return TK_ERR_INVALID_ARG;
	p = (size_t)snprintf(out, cap, "%u-", f->bus);
	for (unsigned i = 0; i < f->nports && p < cap; i++)
		p += (size_t)snprintf(out + p, cap - p, i ? ".%u" : "%u", f->ports[i]);
	return p < cap ? TK_OK : TK_ERR_BUFFER_TOO_SMALL;
}

static void
make_name(tk_ccid_dev_t *d)
{
	char port[4 * TK_CCID_MAX_PORTS + 8];

	read_names(d->h, &d->f, d->product, sizeof(d->product), d->serial, sizeof(d->serial));
	(void)tk_ccid_port_path(&d->f, port, sizeof(port));
	/* (a name cut short is still a name) */
	if (snprintf(d->name, sizeof(d->name), "%s%s%s%s (%s:%u)", d->product,
	             d->serial[0] ? " [" : "", d->serial, d->serial[0] ? "]" : "", port,
	             d->f.iface.number) >= (int)sizeof(d->name))
		tk_log_trace("ccid: reader name cut short");
}

int
tk_ccid_found_names(libusb_context *ctx, const tk_ccid_found_t *f, char *product, size_t pcap,
                    char *serial, size_t scap)
{
	libusb_device **list = NULL;
	libusb_device *dev;
	libusb_device_handle *h = NULL;
	int rv, r = TK_OK;

	if (product != NULL && pcap > 0)
		product[0] = '\0';
	if (serial != NULL && scap > 0)
		serial[0] = '\0';
	if (f == NULL || product == NULL || pcap == 0 || serial == NULL || scap == 0)
		return TK_ERR_INVALID_ARG;
	if ((dev = find_device(ctx, f, &list)) == NULL) {
		r = TK_ERR_READER_GONE;
		goto out;
	}
	/* Opening the device claims nothing: string descriptors come over
	 * the control pipe, whoever holds the interfaces. */
	if ((rv = libusb_open(dev, &h)) != LIBUSB_SUCCESS) {
		r = tk_ccid_err_from_libusb(rv);
		goto out;
	}
	read_names(h, f, product, pcap, serial, scap);
	libusb_close(h);
out:
	if (list != NULL)
		libusb_free_device_list(list, 1);
	return r;
}

/* Open f's device and claim its interface into d->h. */
static int
attach(tk_ccid_dev_t *d, libusb_device *dev)
{
	libusb_device_handle *h = NULL;
	int rv;

	if ((rv = libusb_open(dev, &h)) != LIBUSB_SUCCESS) {
		tk_ccid_set_fault(d, fault_of(rv));
		return tk_ccid_err_from_libusb(rv);
	}
	(void)libusb_set_auto_detach_kernel_driver(h, 1);
	if ((rv = libusb_claim_interface(h, d->f.iface.number)) != LIBUSB_SUCCESS) {
		tk_log_info("ccid: %04x:%04x interface %u: claim: %s%s", d->f.id.vid, d->f.id.pid,
		            d->f.iface.number, libusb_error_name(rv),
		            rv == LIBUSB_ERROR_BUSY ? " (another program uses this reader)" : "");
		libusb_close(h);
		tk_ccid_set_fault(d, fault_of(rv));
		return tk_ccid_err_from_libusb(rv);
	}
	if (d->f.iface.alt != 0 &&
	    (rv = libusb_set_interface_alt_setting(h, d->f.iface.number, d->f.iface.alt)) !=
	            LIBUSB_SUCCESS) {
		(void)libusb_release_interface(h, d->f.iface.number);
		libusb_close(h);
		return tk_ccid_err_from_libusb(rv);
	}
	d->h = h;
	return TK_OK;
}

static void
detach(tk_ccid_dev_t *d)
{
	if (d->h == NULL)
		return;
	(void)libusb_release_interface(d->h, d->f.iface.number);
	libusb_close(d->h);
	d->h = NULL;
}

/* The libusb device f names: same bus, port path and vendor/product. */
static libusb_device *
find_device(libusb_context *ctx, const tk_ccid_found_t *f, libusb_device ***listp)
{
	libusb_device **list = NULL;
	ssize_t n = libusb_get_device_list(ctx, &list);

	*listp = NULL;
	if (n < 0)
		return NULL;
	*listp = list;
	for (ssize_t i = 0; i < n; i++) {
		struct libusb_device_descriptor dd;
		uint8_t ports[TK_CCID_MAX_PORTS];
		int np;

		if (libusb_get_bus_number(list[i]) != f->bus ||
		    libusb_get_device_descriptor(list[i], &dd) != LIBUSB_SUCCESS ||
		    dd.idVendor != f->id.vid || dd.idProduct != f->id.pid)
			continue;
		np = libusb_get_port_numbers(list[i], ports, TK_CCID_MAX_PORTS);
		if (np < 0 || (size_t)np != f->nports || memcmp(ports, f->ports, f->nports) != 0)
			continue;
		return list[i];
	}
	return NULL;
}

int
tk_ccid_open(libusb_context *ctx, const tk_ccid_found_t *f, tk_ccid_dev_t **out)
{
	libusb_device **list = NULL;
	libusb_device *dev;
	tk_ccid_dev_t *d = NULL;
	size_t pkt;
	int r;

	if (out != NULL)
		*out = NULL;
	if (f == NULL || out == NULL)
		return TK_ERR_INVALID_ARG;
	if (tk_ccid_desc_level(&f->iface.desc) == TK_CCID_LEVEL_CHARACTER) {
		tk_log_info("ccid: %04x:%04x: character-level reader: not supported", f->id.vid,
		            f->id.pid);
		return TK_ERR_NOT_SUPPORTED;
	}
	if (f->iface.quirks & TK_CCID_Q_BAD_FIRMWARE) {
		tk_log_warn("ccid: %04x:%04x release %x.%02x: %s; update the reader's firmware",
		            f->id.vid, f->id.pid, f->id.release >> 8, f->id.release & 0xFF,
		            tk_ccid_quirk_name(TK_CCID_Q_BAD_FIRMWARE));
		return TK_ERR_NOT_SUPPORTED;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return TK_ERR_NO_MEMORY;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->evt_lock, NULL);
	atomic_init(&d->evt_stop, false);
	atomic_init(&d->fault, TK_CCID_FAULT_NONE);
	d->ctx = ctx;
	d->f = *f;
	d->level = tk_ccid_desc_level(&f->iface.desc);
	d->nslots = f->iface.desc.max_slot_index + 1u;
	tk_ccid_timeouts_default(&d->to);
	d->wcap = f->iface.desc.max_msg_len;
	/* A bulk-in buffer of whole packets: a reader that sends more than
	 * it announced then shows up as garbage, not as a USB overflow. */
	pkt = f->iface.bulk_in_mps ? f->iface.bulk_in_mps : 64;
	d->rcap = (d->wcap + pkt - 1) / pkt * pkt + pkt;
	if ((d->wbuf = malloc(d->wcap)) == NULL || (d->rbuf = malloc(d->rcap)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto fail;
	}
	for (unsigned i = 0; i < TK_CCID_MAX_SLOTS; i++) {
		d->slots[i].dev = d;
		d->slots[i].index = i;
		d->slots[i].protocol = -1;
	}
	if ((dev = find_device(ctx, f, &list)) == NULL) {
		r = TK_ERR_READER_GONE;
		goto fail;
	}
	if ((r = attach(d, dev)) != TK_OK)
		goto fail;
	libusb_free_device_list(list, 1);
	list = NULL;
	make_name(d);
	tk_log_debug("ccid: opened %s: %s level, %u slot(s)", d->name, tk_ccid_level_name(d->level),
	             d->nslots);
	*out = d;
	return TK_OK;
fail:
	if (list != NULL)
		libusb_free_device_list(list, 1);
	tk_ccid_close(&d);
	return r;
}

void
tk_ccid_close(tk_ccid_dev_t **dp)
{
	tk_ccid_dev_t *d;

	if (dp == NULL || (d = *dp) == NULL)
		return;
	*dp = NULL;
	atomic_store(&d->evt_stop, true);
	pthread_mutex_lock(&d->evt_lock);
	pthread_mutex_lock(&d->lock);
	detach(d);
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&d->evt_lock);
	/* The buffers carried APDUs (PINs among them). */
	tk_freezero(d->wbuf, d->wcap);
	tk_freezero(d->rbuf, d->rcap);
	for (unsigned i = 0; i < TK_CCID_MAX_SLOTS; i++)
		tk_wipe(&d->slots[i].t1, sizeof(d->slots[i].t1));
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->evt_lock);
	free(d);
}

void
tk_ccid_set_timeouts(tk_ccid_dev_t *d, const tk_ccid_timeouts_t *t)
{
	if (d == NULL || t == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->to = *t;
	pthread_mutex_unlock(&d->lock);
}

const tk_ccid_found_t *
tk_ccid_info(const tk_ccid_dev_t *d)
{
	return d != NULL ? &d->f : NULL;
}

const char *
tk_ccid_name(const tk_ccid_dev_t *d)
{
	return d != NULL ? d->name : "";
}

const char *
tk_ccid_product(const tk_ccid_dev_t *d)
{
	return d != NULL ? d->product : "";
}

const char *
tk_ccid_serial(const tk_ccid_dev_t *d)
{
	return d != NULL ? d->serial : "";
}

enum tk_ccid_level
tk_ccid_level(const tk_ccid_dev_t *d)
{
	return d != NULL ? d->level : TK_CCID_LEVEL_CHARACTER;
}

unsigned
tk_ccid_nslots(const tk_ccid_dev_t *d)
{
	return d != NULL ? d->nslots : 0;
}

tk_ccid_slot_t *
tk_ccid_slot(tk_ccid_dev_t *d, unsigned i)
{
	return d != NULL && i < d->nslots ? &d->slots[i] : NULL;
}

tk_ccid_dev_t *
tk_ccid_slot_dev(tk_ccid_slot_t *s)
{
	return s != NULL ? s->dev : NULL;
}

unsigned
tk_ccid_slot_index(const tk_ccid_slot_t *s)
{
	return s != NULL ? s->index : 0;
}

void
tk_ccid_get_stats(tk_ccid_dev_t *d, tk_ccid_stats_t *st)
{
	if (st == NULL)
		return;
	memset(st, 0, sizeof(*st));
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	*st = d->st;
	pthread_mutex_unlock(&d->lock);
}

/* --- transfers ---------------------------------------------------------------- */

int
tk_ccid_bulk_out(tk_ccid_dev_t *d, const uint8_t *p, size_t len, int timeout_ms)
{
	int rv, done = 0;

	if (d->h == NULL) {
		tk_ccid_set_fault(d, TK_CCID_FAULT_GONE);
		return TK_ERR_READER_GONE;
	}
	if (timeout_ms < 1)
		timeout_ms = 1;
	rv = libusb_bulk_transfer(d->h, d->f.iface.ep_bulk_out, (unsigned char *)(uintptr_t)p,
	                          (int)len, &done, (unsigned)timeout_ms);
	if (rv == LIBUSB_SUCCESS && (size_t)done != len)
		rv = LIBUSB_ERROR_IO;
	if (rv != LIBUSB_SUCCESS) {
		tk_log_debug("ccid: %s: bulk out: %s", d->name, libusb_error_name(rv));
		tk_ccid_set_fault(d, fault_of(rv));
		return tk_ccid_err_from_libusb(rv);
	}
	return TK_OK;
}

int
tk_ccid_bulk_in(tk_ccid_dev_t *d, uint8_t *p, size_t cap, size_t *got, int timeout_ms)
{
	int rv, done = 0;

	*got = 0;
	if (d->h == NULL) {
		tk_ccid_set_fault(d, TK_CCID_FAULT_GONE);
		return TK_ERR_READER_GONE;
	}
	if (timeout_ms < 1)
		timeout_ms = 1;
	rv = libusb_bulk_transfer(d->h, d->f.iface.ep_bulk_in, p, (int)cap, &done,
	                          (unsigned)timeout_ms);
	if (rv != LIBUSB_SUCCESS) {
		if (rv != LIBUSB_ERROR_TIMEOUT)
			tk_log_debug("ccid: %s: bulk in: %s", d->name, libusb_error_name(rv));
		tk_ccid_set_fault(d, fault_of(rv));
		return tk_ccid_err_from_libusb(rv);
	}
	*got = (size_t)done;
	return TK_OK;
}

int
tk_ccid_wait_event(tk_ccid_dev_t *d, int timeout_ms, tk_ccid_intr_t *ev)
{
	uint8_t buf[64];
	int64_t end;
	size_t len;
	int r = TK_ERR_TIMEOUT, rv, done;

	if (ev != NULL)
		memset(ev, 0, sizeof(*ev));
	if (d == NULL || ev == NULL)
		return TK_ERR_INVALID_ARG;
	if (d->f.iface.ep_intr_in == 0)
		return TK_ERR_NOT_SUPPORTED;
	/* Whole packets, so a long message is an error we see, not an
	 * overflow of ours. */
	len = d->f.iface.intr_mps < sizeof(buf) ? d->f.iface.intr_mps : sizeof(buf);
	end = tk_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	pthread_mutex_lock(&d->evt_lock);
	for (;;) {
		int64_t left = end - tk_now_ms();
		int slice = left > EVT_SLICE_MS ? EVT_SLICE_MS : (int)left;

		if (atomic_load(&d->evt_stop)) {
			r = TK_ERR_CANCELLED;
			break;
		}
		if (left <= 0 || d->h == NULL) {
			r = d->h == NULL ? TK_ERR_READER_GONE : TK_ERR_TIMEOUT;
			break;
		}
		done = 0;
		rv = libusb_interrupt_transfer(d->h, d->f.iface.ep_intr_in, buf, (int)len, &done,
		                               (unsigned)(slice < 1 ? 1 : slice));
		if (rv == LIBUSB_ERROR_TIMEOUT)
			continue;
		if (rv != LIBUSB_SUCCESS) {
			tk_ccid_set_fault(d, fault_of(rv));
			r = tk_ccid_err_from_libusb(rv);
			break;
		}
		if (tk_ccid_intr_parse(buf, (size_t)done, d->nslots, ev) == TK_OK) {
			r = TK_OK;
			break;
		}
		tk_log_debug("ccid: %s: interrupt message of %d bytes ignored", d->name, done);
	}
	pthread_mutex_unlock(&d->evt_lock);
	return r;
}

/* --- recovery primitives ----------------------------------------------------- */

int
tk_ccid_abort_request(tk_ccid_dev_t *d, uint8_t slot, uint8_t seq)
{
	int rv;

	if (d->h == NULL)
		return TK_ERR_READER_GONE;
	rv = libusb_control_transfer(
	        d->h, LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_CLASS | LIBUSB_RECIPIENT_INTERFACE,
	        TK_CCID_REQ_ABORT, (uint16_t)(seq << 8 | slot), d->f.iface.number, NULL, 0,
	        (unsigned)(d->to.control_ms > 0 ? d->to.control_ms : 1));
	if (rv < 0) {
		tk_log_debug("ccid: %s: ABORT request: %s", d->name, libusb_error_name(rv));
		tk_ccid_set_fault(d, fault_of(rv));
		return tk_ccid_err_from_libusb(rv);
	}
	return TK_OK;
}

int
tk_ccid_clear_halt(tk_ccid_dev_t *d)
{
	const uint8_t eps[] = {d != NULL ? d->f.iface.ep_bulk_out : 0,
	                       d != NULL ? d->f.iface.ep_bulk_in : 0,
	                       d != NULL ? d->f.iface.ep_intr_in : 0};
	int r = TK_OK;

	if (d == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&d->lock);
	d->st.clear_halts++;
	for (size_t i = 0; i < sizeof(eps) && d->h != NULL; i++) {
		int rv;

		if (eps[i] == 0)
			continue;
		rv = libusb_clear_halt(d->h, eps[i]);
		if (rv != LIBUSB_SUCCESS) {
			tk_log_debug("ccid: %s: clear halt %02x: %s", d->name, eps[i],
			             libusb_error_name(rv));
			tk_ccid_set_fault(d, fault_of(rv));
			if (r == TK_OK)
				r = tk_ccid_err_from_libusb(rv);
		}
	}
	if (d->h == NULL)
		r = TK_ERR_READER_GONE;
	if (r == TK_OK) {
		tk_ccid_drain(d);
		tk_ccid_set_fault(d, TK_CCID_FAULT_NONE);
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

int
tk_ccid_reset_device(tk_ccid_dev_t *d)
{
	int rv, r;

	if (d == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&d->lock);
	d->st.resets++;
	tk_ccid_slots_reset(d);
	if (d->h == NULL) {
		r = TK_ERR_READER_GONE;
		goto out;
	}
	rv = libusb_reset_device(d->h);
	if (rv != LIBUSB_SUCCESS) {
		tk_log_info("ccid: %s: USB reset: %s", d->name, libusb_error_name(rv));
		tk_ccid_set_fault(d, fault_of(rv));
		r = tk_ccid_err_from_libusb(rv);
		goto out;
	}
	tk_ccid_drain(d);
	tk_ccid_set_fault(d, TK_CCID_FAULT_NONE);
	r = TK_OK;
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}

int
tk_ccid_reopen(tk_ccid_dev_t *d, int timeout_ms)
{
	int64_t end;
	int r = TK_ERR_READER_GONE;

	if (d == NULL)
		return TK_ERR_INVALID_ARG;
	end = tk_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	atomic_store(&d->evt_stop, true);
	pthread_mutex_lock(&d->evt_lock);
	pthread_mutex_lock(&d->lock);
	d->st.reopens++;
	tk_ccid_slots_reset(d);
	detach(d);
	for (;;) {
		libusb_device **list = NULL;
		libusb_device *dev = find_device(d->ctx, &d->f, &list);
		tk_ccid_found_t f[8];
		size_t n = 0;
		struct timespec ts = {0, REOPEN_POLL_MS * 1000000L};

		if (dev != NULL && tk_ccid_probe(dev, f, 8, &n) == TK_OK) {
			for (size_t i = 0; i < n && i < 8; i++) {
				if (f[i].iface.number != d->f.iface.number)
					continue;
				d->f.addr = f[i].addr;
				d->f.iface = f[i].iface;
				r = attach(d, dev);
				break;
			}
		}
		libusb_free_device_list(list, 1);
		if (r == TK_OK) {
			char old_serial[sizeof(d->serial)];

			memcpy(old_serial, d->serial, sizeof(old_serial));
			make_name(d);
			if (old_serial[0] != '\0' && strcmp(old_serial, d->serial) != 0) {
				/* another reader in the same port */
				tk_log_info("ccid: %s: not the reader that was here (serial %s)",
				            d->name, old_serial);
				detach(d);
				memcpy(d->serial, old_serial, sizeof(old_serial));
				r = TK_ERR_READER_GONE;
			}
			break;
		}
		if (r != TK_ERR_READER_GONE || tk_now_ms() >= end)
			break;
		nanosleep(&ts, NULL);
	}
	if (r == TK_OK)
		tk_ccid_set_fault(d, TK_CCID_FAULT_NONE);
	pthread_mutex_unlock(&d->lock);
	atomic_store(&d->evt_stop, false);
	pthread_mutex_unlock(&d->evt_lock);
	return r;
}
