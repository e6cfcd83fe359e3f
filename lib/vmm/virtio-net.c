/* virtio-net on a TAP device: an existing one by name (on a bridge, in a namespace), or
 * one the VMM makes and brings up. Frames move on the card's I/O thread. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "vmm/internal.h"

#define VIRTIO_ID_NET     1
#define VIRTIO_NET_F_MAC  5
#define VIRTIO_NET_HDR    10 /* struct virtio_net_hdr without merged buffers */
#define NET_FRAME_MAX     65550

enum { NET_RX, NET_TX };

struct virtio_net {
	struct virtio_pci *vp;
	int tap;
	char ifname[IFNAMSIZ];
	uint8_t mac[6];
	bool rx_waiting; /* the TAP watch is off until the guest adds receive buffers */
	uint8_t frame[VIRTIO_NET_HDR + NET_FRAME_MAX];
	struct iovec out[VIRTIO_QUEUE_SIZE], in[VIRTIO_QUEUE_SIZE];
};

/* Moves frames from the TAP device to the guest while both have some; q->lock held. */
static void virtio_net_rx(struct virtio_net *n, struct virtio_queue *q)
{
	struct virtio_chain c = { .out = n->out, .in = n->in };

	for (;;) {
		ssize_t len;

		if (!virtio_queue_pop(q, &c)) {
			/* No buffers: stop watching the TAP, or its readiness spins us. */
			if (!n->rx_waiting)
				iothread_enable(virtio_pci_iothread(n->vp), n->tap, false);
			n->rx_waiting = true;
			return;
		}
		len = read(n->tap, n->frame + VIRTIO_NET_HDR, NET_FRAME_MAX);
		if (len < 0) {
			q->last_avail--; /* put the chain back for the next frame */
			if (n->rx_waiting)
				iothread_enable(virtio_pci_iothread(n->vp), n->tap, true);
			n->rx_waiting = false;
			return;
		}
		memset(n->frame, 0, VIRTIO_NET_HDR);
		virtio_queue_push(q, c.head,
				  (uint32_t)virtio_iov_write(c.in, c.nin, 0, n->frame,
							     VIRTIO_NET_HDR + (size_t)len));
	}
}

static void virtio_net_tx(struct virtio_net *n, struct virtio_queue *q)
{
	struct virtio_chain c = { .out = n->out, .in = n->in };

	while (virtio_queue_pop(q, &c)) {
		size_t len = virtio_iov_read(c.out, c.nout, VIRTIO_NET_HDR, n->frame,
					     NET_FRAME_MAX);

		/* A full TAP queue drops the frame, as a busy wire would. */
		if (len && write(n->tap, n->frame, len) < 0 && errno != EAGAIN)
			vi_debug("%s: cannot send a frame: %s", n->ifname, strerror(errno));
		virtio_queue_push(q, c.head, 0);
	}
}

static void virtio_net_notify(void *dev, struct virtio_queue *q)
{
	if (q->index == NET_RX)
		virtio_net_rx(dev, q);
	else
		virtio_net_tx(dev, q);
}

/* On the I/O thread: frames wait on the TAP device. */
static void virtio_net_tap_ready(void *opaque, int fd)
{
	struct virtio_net *n = opaque;
	struct virtio_queue *q = virtio_pci_queue(n->vp, NET_RX);

	(void)fd;
	pthread_mutex_lock(&q->lock);
	if (q->pfn) {
		virtio_net_rx(n, q);
	} else {
		iothread_enable(virtio_pci_iothread(n->vp), n->tap, false);
		n->rx_waiting = true;
	}
	pthread_mutex_unlock(&q->lock);
}

static void virtio_net_config_read(void *dev, unsigned offset, uint8_t *data, unsigned len)
{
	struct virtio_net *n = dev;

	memcpy(data, n->mac + offset, len);
}

static void virtio_net_free(void *dev)
{
	struct virtio_net *n = dev;

	if (n->tap >= 0)
		close(n->tap);
	free(n);
}

/* No section beyond the transport's: the MAC address is configuration, and frames in
 * flight are lost as on any wire. */
static const struct virtio_ops virtio_net_ops = {
	.kind = "virtio-net",
	.type = VIRTIO_ID_NET,
	.pci_id = 0x1000,
	.pci_class = 0x020000, /* Ethernet */
	.nqueues = 2,
	.features = 1u << VIRTIO_NET_F_MAC,
	.config_size = 6,
	.config_read = virtio_net_config_read,
	.notify = virtio_net_notify,
	.free = virtio_net_free,
};

/* Attaches to the TAP device `name`, or makes one (named by the kernel) and brings it
 * up when name is NULL. */
static int virtio_net_tap_open(struct virtio_net *n, const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int sock, ret = 0;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name ? name : "vi%d");
	n->tap = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (n->tap < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot open '/dev/net/tun'");
	if (ioctl(n->tap, TUNSETIFF, &ifr) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot attach to TAP device '%s'",
				      ifr.ifr_name);
	snprintf(n->ifname, sizeof(n->ifname), "%s", ifr.ifr_name);
	if (name)
		return 0;
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || ioctl(sock, SIOCGIFFLAGS, &ifr) < 0 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(sock, SIOCSIFFLAGS, &ifr) < 0))
		ret = vi_error_errno(VI_EFAIL, errno, "cannot bring TAP device '%s' up",
				     n->ifname);
	if (sock >= 0)
		close(sock);
	return ret;
}

int virtio_net_init(struct vmm *vm)
{
	for (size_t i = 0; i < vm->cfg.nnics; i++) {
		struct virtio_net *n = xcalloc(1, sizeof(*n));
		int ret;

		memcpy(n->mac, vm->cfg.nics[i].mac, sizeof(n->mac));
		ret = virtio_net_tap_open(n, vm->cfg.nics[i].tap);
		if (ret < 0) {
			virtio_net_free(n);
			return vi_error_wrap("network card %zu", i);
		}
		ret = virtio_pci_add(vm, &virtio_net_ops, n, &n->vp);
		if (ret == 0)
			ret = iothread_watch(virtio_pci_iothread(n->vp), n->tap,
					     virtio_net_tap_ready, n);
		if (ret < 0)
			return ret;
	}
	return 0;
}
