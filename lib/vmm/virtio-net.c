/* virtio-net on a TAP device: an existing one by name (on a bridge, in a namespace), or
 * one the VMM makes and brings up; or on user-mode networking (net-slirp.c). Frames move
 * on the card's I/O thread. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
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
#define NET_BACKLOG       64 /* frames from slirp kept while the guest has no buffers */

enum { NET_RX, NET_TX };

struct virtio_net {
	struct virtio_pci *vp;
	int tap;
	char ifname[IFNAMSIZ];
	uint8_t mac[6];
	bool rx_waiting; /* the TAP watch is off until the guest adds receive buffers */
	struct net_slirp *slirp; /* instead of the TAP device */
	struct net_dhcp *dhcp;   /* on vi's network: its DHCP answered here */
	uint8_t reply[NET_DHCP_REPLY_MAX];
	struct {
		uint8_t *frame;
		size_t len;
	} backlog[NET_BACKLOG]; /* oldest first; guarded by the RX queue's lock */
	unsigned nbacklog;
	uint8_t frame[VIRTIO_NET_HDR + NET_FRAME_MAX];
	struct iovec out[VIRTIO_QUEUE_SIZE], in[VIRTIO_QUEUE_SIZE];
	/* Frame bytes given to and taken from the guest: read by any thread. */
	_Atomic uint64_t rx_bytes, tx_bytes;
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
		atomic_fetch_add(&n->rx_bytes, (uint64_t)len);
		virtio_queue_push(q, c.head,
				  (uint32_t)virtio_iov_write(c.in, c.nin, 0, n->frame,
							     VIRTIO_NET_HDR + (size_t)len));
	}
}

/* One frame into the guest's next receive buffer; false when it has none. */
static bool virtio_net_put(struct virtio_net *n, struct virtio_queue *q, const uint8_t *frame,
			   size_t len)
{
	static const uint8_t hdr[VIRTIO_NET_HDR];
	struct virtio_chain c = { .out = n->out, .in = n->in };

	if (!q->enabled || !virtio_queue_pop(q, &c))
		return false;
	virtio_iov_write(c.in, c.nin, 0, hdr, sizeof(hdr));
	atomic_fetch_add(&n->rx_bytes, len);
	virtio_queue_push(q, c.head,
			  (uint32_t)(VIRTIO_NET_HDR +
				     virtio_iov_write(c.in, c.nin, VIRTIO_NET_HDR, frame, len)));
	return true;
}

/* Frames kept for the guest, while it has buffers for them; q->lock held. */
static void virtio_net_flush(struct virtio_net *n, struct virtio_queue *q)
{
	unsigned done = 0;

	while (done < n->nbacklog &&
	       virtio_net_put(n, q, n->backlog[done].frame, n->backlog[done].len))
		free(n->backlog[done++].frame);
	n->nbacklog -= done;
	memmove(n->backlog, n->backlog + done, n->nbacklog * sizeof(n->backlog[0]));
}

/* On the I/O thread: a frame from slirp. Kept, in order, while the guest has no buffers
 * for it; past NET_BACKLOG dropped, as a busy wire would, and TCP sends it again. */
static void virtio_net_deliver(void *opaque, const uint8_t *frame, size_t len)
{
	struct virtio_net *n = opaque;
	struct virtio_queue *q = virtio_pci_queue(n->vp, NET_RX);

	pthread_mutex_lock(&q->lock);
	virtio_net_flush(n, q);
	if (!n->nbacklog && virtio_net_put(n, q, frame, len)) {
		pthread_mutex_unlock(&q->lock);
		return;
	}
	if (n->nbacklog < NET_BACKLOG) {
		n->backlog[n->nbacklog].frame = memcpy(xmalloc(len), frame, len);
		n->backlog[n->nbacklog++].len = len;
	}
	pthread_mutex_unlock(&q->lock);
}

/* A DHCP request of the guest's, answered at once (no buffer for the answer: the guest
 * asks again); true when the frame was one. */
static bool virtio_net_dhcp(struct virtio_net *n, size_t len)
{
	struct virtio_queue *rx = virtio_pci_queue(n->vp, NET_RX);
	bool taken;
	size_t rlen = net_dhcp_input(n->dhcp, n->frame, len, n->reply, &taken);

	if (rlen) {
		pthread_mutex_lock(&rx->lock);
		virtio_net_put(n, rx, n->reply, rlen);
		pthread_mutex_unlock(&rx->lock);
	}
	return taken;
}

static void virtio_net_tx(struct virtio_net *n, struct virtio_queue *q)
{
	struct virtio_chain c = { .out = n->out, .in = n->in };

	while (virtio_queue_pop(q, &c)) {
		size_t len = virtio_iov_read(c.out, c.nout, VIRTIO_NET_HDR, n->frame,
					     NET_FRAME_MAX);

		atomic_fetch_add(&n->tx_bytes, len);
		/* A full TAP queue drops the frame, as a busy wire would. */
		if (len && n->dhcp && virtio_net_dhcp(n, len))
			len = 0; /* answered here */
		if (len && n->slirp)
			net_slirp_input(n->slirp, n->frame, len);
		else if (len && write(n->tap, n->frame, len) < 0 && errno != EAGAIN)
			vi_debug("%s: cannot send a frame: %s", n->ifname, strerror(errno));
		virtio_queue_push(q, c.head, 0);
	}
}

static void virtio_net_notify(void *dev, struct virtio_queue *q)
{
	struct virtio_net *n = dev;

	if (q->index == NET_RX && n->slirp)
		virtio_net_flush(n, q);
	else if (q->index == NET_RX)
		virtio_net_rx(n, q);
	else
		virtio_net_tx(n, q);
}

/* On the I/O thread: frames wait on the TAP device. */
static void virtio_net_tap_ready(void *opaque, int fd)
{
	struct virtio_net *n = opaque;
	struct virtio_queue *q = virtio_pci_queue(n->vp, NET_RX);

	(void)fd;
	pthread_mutex_lock(&q->lock);
	if (q->enabled) {
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
	net_slirp_free(n->slirp);
	net_dhcp_free(n->dhcp);
	for (unsigned i = 0; i < n->nbacklog; i++)
		free(n->backlog[i].frame);
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

static int tap_join_bridge(int sock, const char *tap, const char *bridge)
{
	struct ifreq ifr = { 0 };

	/* The TAP's index, asked under its own name, goes to the bridge under the bridge's. */
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
	if (ioctl(sock, SIOCGIFINDEX, &ifr) == 0) {
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", bridge);
		if (ioctl(sock, SIOCBRADDIF, &ifr) == 0)
			return 0;
	}
	return vi_error_errno(VI_EFAIL, errno, "cannot put TAP device '%s' on bridge '%s'", tap,
			      bridge);
}

/* Attaches to the TAP device `name`, or makes one (named by the kernel), puts it on
 * `bridge` (unless NULL) and brings it up when name is NULL. */
static int virtio_net_tap_open(struct virtio_net *n, const char *name, const char *bridge)
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
	if (sock >= 0 && bridge)
		ret = tap_join_bridge(sock, n->ifname, bridge);
	if (ret == 0 && (sock < 0 || vmm_link_set(sock, n->ifname, true) < 0))
		ret = vi_error_errno(VI_EFAIL, errno, "cannot bring TAP device '%s' up",
				     n->ifname);
	if (sock >= 0)
		close(sock);
	return ret;
}

/* The card's backend: slirp, or the TAP device with its watch. */
static int virtio_net_backend(struct virtio_net *n, const struct vmm_nic *nic)
{
	struct iothread *io = virtio_pci_iothread(n->vp);

	if (nic->user)
		return net_slirp_attach(n->slirp, io);
	return iothread_watch(io, n->tap, virtio_net_tap_ready, n);
}

int virtio_net_init(struct vmm *vm)
{
	for (size_t i = 0; i < vm->cfg.nnics; i++) {
		const struct vmm_nic *nic = &vm->cfg.nics[i];
		struct virtio_net *n = xcalloc(1, sizeof(*n));
		int ret;

		n->tap = -1;
		memcpy(n->mac, nic->mac, sizeof(n->mac));
		if (nic->user)
			ret = net_slirp_new(nic, virtio_net_deliver, n, &n->slirp);
		else
			ret = virtio_net_tap_open(n, nic->tap, nic->bridge);
		if (ret == 0 && nic->network)
			ret = net_dhcp_new(nic->network, nic->mac, &n->dhcp);
		if (ret < 0) {
			virtio_net_free(n);
			return vi_error_wrap("network card %zu", i);
		}
		ret = virtio_pci_add(vm, &virtio_net_ops, n, &n->vp);
		if (ret == 0)
			ret = virtio_net_backend(n, nic);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void virtio_net_add_stats(struct vmm *vm, struct vmm_stats *st)
{
	struct virtio_pci *vp;

	for (unsigned i = 0; (vp = vmm_device_get(vm, "virtio-net", i)); i++) {
		struct virtio_net *n = virtio_pci_dev(vp);

		st->net_rx_bytes += atomic_load(&n->rx_bytes);
		st->net_tx_bytes += atomic_load(&n->tx_bytes);
	}
}

static int virtio_net_card(struct vmm *vm, size_t nic, struct virtio_net **out)
{
	struct virtio_pci *vp = vmm_device_get(vm, "virtio-net", (unsigned)nic);

	if (!vp)
		return vi_error(VI_ENOTFOUND, "the VM has no network card %zu", nic);
	*out = virtio_pci_dev(vp);
	return 0;
}

/* The card of NIC `nic` when it is user-mode. */
static int virtio_net_user(struct vmm *vm, size_t nic, struct virtio_net **out)
{
	int ret = virtio_net_card(vm, nic, out);

	if (ret < 0)
		return ret;
	if (!(*out)->slirp)
		return vi_error(VI_EUSAGE, "network card %zu is not on user-mode networking", nic);
	return 0;
}

static bool same_forward(const struct vmm_forward *a, const struct vmm_forward *b)
{
	const char *ha = a->host_addr ? a->host_addr : "127.0.0.1";
	const char *hb = b->host_addr ? b->host_addr : "127.0.0.1";

	return a->udp == b->udp && a->host_port == b->host_port && !strcmp(ha, hb);
}

/* The configuration follows the forwards as they are: it is what a saved state is
 * compared with (vmm_config_shape()). */
static void config_forward(struct vmm *vm, size_t nic, const struct vmm_forward *f, bool add)
{
	struct vmm_nic *c = (struct vmm_nic *)&vm->cfg.nics[nic];
	struct vmm_forward *fwd = (struct vmm_forward *)c->forwards;

	if (add) {
		fwd = xrealloc(fwd, (c->nforwards + 2) * sizeof(*fwd));
		fwd[c->nforwards] = *f;
		fwd[c->nforwards++].host_addr = xstrdup(f->host_addr);
		c->forwards = fwd;
		return;
	}
	for (size_t i = 0; i < c->nforwards; i++) {
		if (!same_forward(&fwd[i], f))
			continue;
		free((char *)fwd[i].host_addr);
		memmove(&fwd[i], &fwd[i + 1], (c->nforwards - i - 1) * sizeof(*fwd));
		c->nforwards--;
		return;
	}
}

int vmm_nic_forward(struct vmm *vm, size_t nic, const struct vmm_forward *f, bool add)
{
	struct virtio_net *n;
	int ret = virtio_net_user(vm, nic, &n);

	if (ret == 0)
		ret = net_slirp_forward(n->slirp, f, add);
	if (ret == 0)
		config_forward(vm, nic, f, add);
	return ret;
}

int vmm_nic_address(struct vmm *vm, size_t nic, char *buf, size_t len)
{
	struct virtio_net *n = NULL;
	int ret = virtio_net_card(vm, nic, &n);

	if (ret == 0 && n->dhcp)
		return net_dhcp_address(n->dhcp, buf, len);
	if (ret == 0)
		ret = virtio_net_user(vm, nic, &n);
	return ret < 0 ? ret : net_slirp_address(n->slirp, buf, len);
}
