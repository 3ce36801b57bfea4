/* The emulated CCID reader's insides, shared by ccid_emu.c (USB, usbfs,
 * umockdev) and emu_reader.c (the CCID reader and the card's protocols). */
#ifndef TK_CCID_EMU_INT_H
#define TK_CCID_EMU_INT_H

#include <glib.h>
#include <umockdev.h>

#include "ccid_emu.h"
#include "t1.h"

#define EMU_MAX_IFACES 2
#define EMU_MAX_SLOTS 2
#define EMU_MAX_APDU (65544 + 16)
#define EMU_MAX_RESP (65536 + 2)

/* One message waiting on bulk-in (or interrupt-in). */
typedef struct emu_msg {
	uint8_t *data;
	size_t len, off;
	int64_t due_us; /* not before */
} emu_msg_t;

typedef struct emu_slot {
	ccid_emu_card_t card;
	bool present, powered;
	uint8_t atr_override[33];
	size_t atr_override_len;
	uint8_t atr[33];
	size_t atr_len;
	int protocol;        /* from the ATR: 1 when it offers T=1, else 0 */
	uint8_t card_fidi;   /* the card's rate (after PPS) */
	uint8_t reader_fidi; /* the reader's rate (SetParameters) */
	bool exchanged;      /* something went to the card since power on (no PPS after) */
	/* extended APDU level chains */
	uint8_t *cmd; /* EMU_MAX_APDU */
	size_t cmd_len;
	bool cmd_chain;
	uint8_t *resp; /* EMU_MAX_RESP */
	size_t resp_len, resp_off;
	/* T=1, the card's side */
	bool t1_crc;
	size_t t1_ifsc, t1_ifsd;
	uint8_t t1_ns;     /* N(S) of the card's next new I-block */
	uint8_t t1_nr;     /* N(S) expected from the host */
	bool t1_sending;   /* in the middle of the card's chain */
	uint8_t t1_cur_ns; /* N(S) of the chained block in flight */
	size_t t1_chunk;
	uint8_t t1_last[TK_T1_MAX_BLOCK];
	size_t t1_last_len;
	unsigned t1_wtx_left;
	/* T=0: data waiting for GET RESPONSE */
	uint8_t t0_sw1, t0_sw2;
} emu_slot_t;

typedef struct emu_iface {
	struct ccid_emu_dev *dev;
	unsigned index;
	ccid_emu_reader_cfg_t cfg;
	uint8_t number;
	uint8_t ep_out, ep_in, ep_intr;
	uint32_t features;
	uint32_t max_msg;
	emu_slot_t slots[EMU_MAX_SLOTS];
	GQueue bulk_q; /* emu_msg_t * */
	GQueue intr_q;
	ccid_emu_faults_t faults;
	ccid_emu_counts_t counts;
	bool halted_out, halted_in;
	bool wedged_abort, wedged_reset;
	int abort_seq, abort_slot; /* ABORT request seen, -1 if none */
	bool unanswered;           /* a command a fault swallowed is pending */
	uint8_t unanswered_seq, unanswered_slot;
	void *claimed_by; /* UMockdevIoctlClient */
	/* PIN pad */
	enum ccid_emu_pin_action pin_action;
	char pin[32], new_pin[32], confirm_pin[32]; /* confirm_pin "": new_pin again */
	uint8_t last_pin_apdu[300];
	size_t last_pin_apdu_len;
} emu_iface_t;

struct ccid_emu_dev {
	ccid_emu_t *emu;
	ccid_emu_dev_cfg_t cfg;
	char manufacturer[64], product[64], serial[64];
	unsigned bus, devnum;
	unsigned port;
	char syspath[256];
	char devnode[64];
	uint8_t desc[512];
	size_t desc_len;
	emu_iface_t ifaces[EMU_MAX_IFACES];
	unsigned nifaces;
	bool gone;
	UMockdevIoctlBase *handler;
	GList *urbs; /* struct emu_urb * */
};

struct ccid_emu {
	UMockdevTestbed *tb;
	char *root;
	GMutex lock; /* everything of every device */
	GList *devs;
	unsigned next_devnum, next_port;
	/* the main contexts of umockdev's ioctl threads (where the card runs) */
	GList *ioctl_ctxs;
};

/* emu_reader.c, with e->lock held. */
void emu_iface_init(emu_iface_t *f);
void emu_iface_clear(emu_iface_t *f);
/* A complete bulk-out transfer (one CCID message). */
void emu_bulk_out(emu_iface_t *f, const uint8_t *p, size_t len);
/* The ABORT class request. */
void emu_abort_request(emu_iface_t *f, unsigned slot, unsigned seq);
/* Power-up state (USB reset, replug). */
void emu_iface_reset(emu_iface_t *f);
/* Queue an interrupt message. */
void emu_intr(emu_iface_t *f, const uint8_t *p, size_t len);
void emu_notify_slots(emu_iface_t *f, unsigned changed_slot);

/* ccid_emu.c */
void emu_queue(GQueue *q, const uint8_t *p, size_t len, int64_t due_us);
void emu_msg_free(emu_msg_t *m);

#endif
