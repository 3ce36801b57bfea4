/* ccid-emu-serve: an emulated CCID reader with the virtual PIV card in it,
 * for other programs to talk to (pcscd with libccid, GnuPG's scdaemon):
 *
 *   ccid-emu-serve [--level ext|short|tpdu] [--t0] [--slots 2] [--ifaces 2]
 *                  [--pinpad PIN] [--vid V --pid P] [--log FILE]
 *                  [--control FIFO] [--state FILE] -- CMD ARGS...
 *
 * It runs under libumockdev-preload, creates the testbed, adds the reader,
 * then runs CMD with $UMOCKDEV_DIR set (and the preload inherited), so
 * every program CMD starts sees the reader at /dev/bus/usb/001/002. The
 * exit status is CMD's. --log writes the reader's counters when CMD ends.
 * --state keeps the first card (interface 0, slot 0) in FILE, as
 * tokenkit-vcard --state does, so one run can provision it for the next.
 * --control makes a FIFO whose lines drive the reader while CMD runs:
 *   remove I S | insert I S     take the card of interface I, slot S out,
 *                               put it back (NotifySlotChange)
 *   hwerror I S                 a HardwareError on the interrupt pipe
 *   unplug | replug             the device goes, comes back (same port)
 *   fault I NAME                stall_out, stall_in, wedge_abort,
 *                               wedge_reset, mute_card, or none
 *   pin I enter PIN [NEW [CONFIRM]] | pin I cancel | pin I timeout
 *                               the PIN pad's user: the PIN, for a change
 *                               the old PIN, the new one (default PIN) and
 *                               its confirmation (default NEW)
 * After each line it appends the line to FIFO.done, so a script can wait
 * until the reader took it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emu_vcard.h"
#include "descriptor.h"
#include "message.h"

/* T=0 only, TA1 13 (Fi 372, Di 4), card capabilities: chaining, no
 * extended length. */
static const uint8_t atr_t0[] = {0x3B, 0x17, 0x13, 0x80, 0x31, 0xC0, 0x73, 0xC0, 0x21, 0x80};

static ccid_emu_dev_t *dev;
static tk_vcard_t *cards[4];

/* One control line (see the top). */
static void
control_line(char *line)
{
	char cmd[16] = "", arg[32] = "", pin[32] = "", new_pin[32] = "", confirm[32] = "";
	unsigned i = 0, sl = 0;
	int n = sscanf(line, "%15s %u %31s %31s %31s %31s", cmd, &i, arg, pin, new_pin, confirm);

	if (n >= 1 && strcmp(cmd, "unplug") == 0) {
		ccid_emu_unplug(dev);
	} else if (n >= 1 && strcmp(cmd, "replug") == 0) {
		ccid_emu_replug(dev);
	} else if (n >= 3 && i < 2 &&
	           (strcmp(cmd, "remove") == 0 || strcmp(cmd, "insert") == 0 ||
	            strcmp(cmd, "hwerror") == 0)) {
		sl = (unsigned)strtoul(arg, NULL, 10);
		if (sl >= 2 || cards[i * 2 + sl] == NULL) {
			fprintf(stderr, "ccid-emu-serve: no card %u %u\n", i, sl);
		} else if (cmd[0] == 'r') {
			ccid_emu_remove_card(dev, i, sl, true);
		} else if (cmd[0] == 'i') {
			ccid_emu_card_t card = emu_vcard(cards[i * 2 + sl]);

			ccid_emu_insert(dev, i, sl, &card, true);
		} else {
			ccid_emu_hw_error(dev, i, sl, 0x01);
		}
	} else if (n >= 3 && strcmp(cmd, "fault") == 0) {
		ccid_emu_faults_t f = {0};

		f.stall_out = strcmp(arg, "stall_out") == 0;
		f.stall_in = strcmp(arg, "stall_in") == 0;
		f.wedge_abort = strcmp(arg, "wedge_abort") == 0;
		f.wedge_reset = strcmp(arg, "wedge_reset") == 0;
		f.mute_card = strcmp(arg, "mute_card") == 0;
		ccid_emu_set_faults(dev, i, &f);
	} else if (n >= 3 && strcmp(cmd, "pin") == 0) {
		ccid_emu_pin_input(dev, i,
		                   strcmp(arg, "cancel") == 0    ? EMU_PIN_CANCEL
		                   : strcmp(arg, "timeout") == 0 ? EMU_PIN_TIMEOUT
		                                                 : EMU_PIN_ENTER,
		                   pin, new_pin[0] != '\0' ? new_pin : pin);
		ccid_emu_pin_confirm(dev, i, confirm);
	} else {
		fprintf(stderr, "ccid-emu-serve: control: '%s' not understood\n", line);
	}
}

/* The line was carried out: FIFO.done gets it (see the top). */
static void
control_done(const char *fifo, const char *line)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s.done", fifo);
	if ((f = fopen(path, "ae")) == NULL)
		return;
	fprintf(f, "%s\n", line);
	fclose(f);
}

static void *
control_main(void *arg)
{
	/* read and write, so the FIFO never sees "no writer" (EOF); not
	 * inherited by CMD's processes */
	int fd = open(arg, O_RDWR | O_CLOEXEC);
	char buf[256];
	size_t have = 0;

	if (fd < 0) {
		fprintf(stderr, "ccid-emu-serve: %s: %s\n", (const char *)arg, strerror(errno));
		return NULL;
	}
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		char *nl;

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			break;
		}
		have += (size_t)n;
		buf[have] = '\0';
		while ((nl = strchr(buf, '\n')) != NULL) {
			*nl = '\0';
			control_line(buf);
			control_done(arg, buf);
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have + 1);
		}
		if (have == sizeof(buf) - 1)
			have = 0; /* a line too long: dropped */
	}
	close(fd);
	return NULL;
}

static void
usage(void)
{
	fprintf(stderr, "usage: ccid-emu-serve [--level ext|short|tpdu] [--t0] [--slots N] "
	                "[--ifaces N] [--pinpad PIN] [--vid V --pid P] [--log FILE] "
	                "[--control FIFO] [--state FILE] -- CMD...\n");
	exit(2);
}

static void
write_counts(const char *path, ccid_emu_dev_t *d, unsigned nifaces)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return;
	for (unsigned i = 0; i < nifaces; i++) {
		ccid_emu_counts_t c;

		ccid_emu_counts(d, i, &c);
		for (unsigned t = 0; t < 256; t++)
			if (c.msgs[t] != 0)
				fprintf(f, "iface%u %s %u\n", i, tk_ccid_msg_name((uint8_t)t),
				        c.msgs[t]);
		fprintf(f,
		        "iface%u apdus %u\niface%u pps %u\niface%u set_params %u\n"
		        "iface%u t1_blocks %u\niface%u t1_ifs_req %u\niface%u xfr_chained %u\n"
		        "iface%u secure %u\niface%u t0_get_response %u\niface%u claims %u\n"
		        "iface%u modify_secure %u\niface%u pin_entries %u\n",
		        i, c.apdus, i, c.pps, i, c.set_params, i, c.t1_blocks, i, c.t1_ifs_req, i,
		        c.xfr_chained, i, c.secure, i, c.t0_get_response, i, c.claims, i,
		        c.modify_secure, i, c.pin_entries);
	}
	fclose(f);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {{"level", required_argument, NULL, 'l'},
	                                     {"t0", no_argument, NULL, '0'},
	                                     {"slots", required_argument, NULL, 's'},
	                                     {"ifaces", required_argument, NULL, 'i'},
	                                     {"pinpad", required_argument, NULL, 'p'},
	                                     {"vid", required_argument, NULL, 'v'},
	                                     {"pid", required_argument, NULL, 'P'},
	                                     {"log", required_argument, NULL, 'L'},
	                                     {"control", required_argument, NULL, 'C'},
	                                     {"state", required_argument, NULL, 'S'},
	                                     {NULL, 0, NULL, 0}};
	ccid_emu_dev_cfg_t cfg = {.vid = 0x04E6,
	                          .pid = 0x5116,
	                          .release = 0x0520,
	                          .manufacturer = "tokenkit",
	                          .product = "Emulated CCID Reader",
	                          .serial = "EMU0001",
	                          .ninterfaces = 1};
	enum ccid_emu_level level = EMU_EXT_APDU;
	const char *pin = NULL, *log = NULL, *state = NULL;
	char *ctl = NULL;
	bool t0 = false;
	unsigned slots = 1;
	ccid_emu_t *e;
	ccid_emu_dev_t *d;
	pthread_t ctl_thread;
	pid_t child;
	int o, st = 0;

	ccid_emu_reexec(argc, argv);
	while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			level = strcmp(optarg, "tpdu") == 0    ? EMU_TPDU
			        : strcmp(optarg, "short") == 0 ? EMU_SHORT_APDU
			                                       : EMU_EXT_APDU;
			break;
		case '0':
			t0 = true;
			break;
		case 's':
			slots = (unsigned)atoi(optarg);
			break;
		case 'i':
			cfg.ninterfaces = (unsigned)atoi(optarg);
			break;
		case 'p':
			pin = optarg;
			break;
		case 'v':
			cfg.vid = (uint16_t)strtoul(optarg, NULL, 16);
			break;
		case 'P':
			cfg.pid = (uint16_t)strtoul(optarg, NULL, 16);
			break;
		case 'L':
			log = optarg;
			break;
		case 'C':
			ctl = optarg;
			break;
		case 'S':
			state = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind >= argc || cfg.ninterfaces < 1 || cfg.ninterfaces > 2 || slots < 1 || slots > 2)
		usage();
	for (unsigned i = 0; i < cfg.ninterfaces; i++) {
		cfg.iface[i].level = level;
		cfg.iface[i].nslots = slots;
		cfg.iface[i].pin_support = pin ? (TK_CCID_PIN_VERIFY | TK_CCID_PIN_MODIFY) : 0;
	}
	if ((e = ccid_emu_new()) == NULL)
		return 1;
	if ((d = ccid_emu_add(e, &cfg)) == NULL)
		return 1;
	for (unsigned i = 0; i < cfg.ninterfaces; i++) {
		for (unsigned s = 0; s < slots; s++) {
			tk_vcard_t **c = &cards[i * 2 + s];
			ccid_emu_card_t card;

			if (tk_vcard_open(i == 0 && s == 0 ? state : NULL, c) != 0)
				return 1;
			card = emu_vcard(*c);
			ccid_emu_insert(d, i, s, &card, false);
			if (t0)
				ccid_emu_set_atr(d, i, s, atr_t0, sizeof(atr_t0));
		}
		if (pin != NULL)
			ccid_emu_pin_input(d, i, EMU_PIN_ENTER, pin, pin);
	}
	dev = d;
	if (ctl != NULL) {
		if (mkfifo(ctl, 0600) != 0 && errno != EEXIST) {
			fprintf(stderr, "ccid-emu-serve: %s: %s\n", ctl, strerror(errno));
			return 1;
		}
		if (pthread_create(&ctl_thread, NULL, control_main, ctl) != 0)
			return 1;
		pthread_detach(ctl_thread);
	}
	fprintf(stderr, "ccid-emu-serve: UMOCKDEV_DIR=%s\n", ccid_emu_root(e));
	if ((child = fork()) < 0)
		return 1;
	if (child == 0) {
		execvp(argv[optind], argv + optind);
		perror(argv[optind]);
		_exit(127);
	}
	while (waitpid(child, &st, 0) < 0)
		;
	if (log != NULL)
		write_counts(log, d, cfg.ninterfaces);
	/* let umockdev notice the clients' closed streams before the testbed
	 * goes (it complains about open ones otherwise) */
	usleep(300000);
	ccid_emu_free(&e);
	for (unsigned i = 0; i < 4; i++)
		tk_vcard_free(&cards[i]);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
