package namespaces

// The sysctls of a network namespace CRIU saves: each link's IPv4 and
// IPv6 settings (NetDeviceEntry conf4, conf6: net/ipv4/conf/IF/...,
// net/ipv6/conf/IF/...), the namespace's "all" and "default" ones
// (NetnsEntry all_conf4, def_conf4, all_conf6, def_conf6),
// net/unix/max_dgram_qlen (unix_conf) and net/ipv4/ping_group_range
// (ipv4_sysctl). The entries carry no names: the i-th is the i-th of
// CRIU's lists below, so the lists keep CRIU's order. A setting this
// kernel lacks is saved without a value and skipped on restore, and one
// the restoring kernel lacks is skipped too.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/netdev"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/sysctl"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// devconfs4 are the per-link IPv4 settings, in CRIU's order.
var devconfs4 = []string{
	"accept_local", "accept_redirects", "accept_source_route", "arp_accept", "arp_announce", "arp_filter",
	"arp_ignore", "arp_notify", "bootp_relay", "disable_policy", "disable_xfrm", "force_igmp_version",
	"forwarding", "igmpv2_unsolicited_report_interval", "igmpv3_unsolicited_report_interval", "log_martians",
	"medium_id", "promote_secondaries", "proxy_arp", "proxy_arp_pvlan", "route_localnet", "rp_filter",
	"secure_redirects", "send_redirects", "shared_media", "src_valid_mark", "tag", "ignore_routes_with_linkdown",
	"drop_gratuitous_arp", "drop_unicast_in_l2_multicast",
}

// devconfs6 are the per-link IPv6 settings, in CRIU's order.
var devconfs6 = []string{
	"accept_dad", "accept_ra", "accept_ra_defrtr", "accept_ra_from_local", "accept_ra_min_hop_limit",
	"accept_ra_mtu", "accept_ra_pinfo", "accept_ra_rt_info_max_plen", "accept_ra_rtr_pref", "accept_redirects",
	"accept_source_route", "autoconf", "dad_transmits", "disable_ipv6", "drop_unicast_in_l2_multicast",
	"drop_unsolicited_na", "force_mld_version", "force_tllao", "forwarding", "hop_limit",
	"ignore_routes_with_linkdown", "keep_addr_on_down", "max_addresses", "max_desync_factor",
	"mldv1_unsolicited_report_interval", "mldv2_unsolicited_report_interval", "mtu", "ndisc_notify",
	"optimistic_dad", "proxy_ndp", "regen_max_retry", "router_probe_interval", "router_solicitation_delay",
	"router_solicitation_interval", "router_solicitations", "stable_secret", "suppress_frag_ndisc",
	"temp_prefered_lft", "temp_valid_lft", "use_oif_addrs_only", "use_optimistic", "use_tempaddr",
}

// confSet is one directory of settings and the names of its entries.
type confSet struct {
	dir   string // under /proc/sys/net
	names []string
}

func conf4(target string) confSet { return confSet{"ipv4/conf/" + target, devconfs4} }
func conf6(target string) confSet { return confSet{"ipv6/conf/" + target, devconfs6} }

var (
	unixConf = confSet{"unix", []string{"max_dgram_qlen"}}
	ipv4Conf = confSet{"ipv4", []string{"ping_group_range"}}
)

// strSetting tells the settings whose values are strings.
func strSetting(name string) bool { return name == "stable_secret" || name == "ping_group_range" }

// readConf reads the settings of c in the calling thread's network
// namespace.
func readConf(c confSet) ([]*sysctl.SysctlEntry, error) {
	out := make([]*sysctl.SysctlEntry, len(c.names))
	for i, name := range c.names {
		e, err := readSetting(c.dir + "/" + name)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// readSetting reads one setting: an entry without a value if the kernel
// has no such setting, or, for stable_secret, none set (EIO).
func readSetting(path string) (*sysctl.SysctlEntry, error) {
	name := path[strings.LastIndex(path, "/")+1:]
	e := &sysctl.SysctlEntry{Type: sysctl.SysctlType_CTL_32.Enum()}
	if strSetting(name) {
		e.Type = sysctl.SysctlType_CTL_STR.Enum()
	}
	b, err := os.ReadFile("/proc/sys/net/" + path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.EIO) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sysctl net/%s: %w", path, err)
	}
	v := strings.TrimSuffix(string(b), "\n")
	if strSetting(name) {
		e.Sarg = proto.String(v)
		return e, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("sysctl net/%s: %q: %w", path, v, err)
	}
	e.Iarg = proto.Int32(int32(n))
	return e, nil
}

// writeConf sets the settings of c in the calling thread's network
// namespace to conf's, in order but accept_redirects last (forwarding
// changes it). What has no value in conf, or has it already, is left.
func writeConf(c confSet, conf []*sysctl.SysctlEntry) error {
	last := -1
	for i, e := range conf {
		if i >= len(c.names) {
			break // settings of a newer CRIU than these lists
		}
		if c.names[i] == "accept_redirects" {
			last = i
			continue
		}
		if err := writeSetting(c.dir+"/"+c.names[i], e); err != nil {
			return err
		}
	}
	if last >= 0 {
		return writeSetting(c.dir+"/"+c.names[last], conf[last])
	}
	return nil
}

func writeSetting(path string, e *sysctl.SysctlEntry) error {
	var want string
	switch {
	case e.GetType() == sysctl.SysctlType_CTL_32 && e.Iarg != nil:
		want = strconv.Itoa(int(e.GetIarg()))
	case e.GetType() == sysctl.SysctlType_CTL_STR && e.Sarg != nil:
		want = e.GetSarg()
	default:
		return nil
	}
	full := "/proc/sys/net/" + path
	if b, err := os.ReadFile(full); err == nil && strings.TrimSuffix(string(b), "\n") == want {
		return nil
	}
	err := os.WriteFile(full, []byte(want), 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a setting of the dumping kernel this one lacks (CRIU's --weak-sysctls)
	}
	if err != nil {
		return fmt.Errorf("sysctl net/%s = %q: %w", path, want, err)
	}
	return nil
}

// readLinkConf fills e's conf4 and conf6 from its link's settings.
func readLinkConf(e *netdev.NetDeviceEntry) error {
	var err error
	if e.Conf4, err = readConf(conf4(e.GetName())); err != nil {
		return err
	}
	e.Conf6, err = readConf(conf6(e.GetName()))
	return err
}

// writeLinkConf sets a restored link's settings from e.
func writeLinkConf(e *netdev.NetDeviceEntry) error {
	if err := writeConf(conf4(e.GetName()), e.Conf4); err != nil {
		return err
	}
	return writeConf(conf6(e.GetName()), e.Conf6)
}

// readNetnsConf is the NetnsEntry of the calling thread's network
// namespace: its "all" and "default" settings and its other sysctls.
func readNetnsConf() (*netdev.NetnsEntry, error) {
	n := &netdev.NetnsEntry{}
	for _, r := range []struct {
		to *[]*sysctl.SysctlEntry
		c  confSet
	}{
		{&n.DefConf4, conf4("default")}, {&n.AllConf4, conf4("all")},
		{&n.DefConf6, conf6("default")}, {&n.AllConf6, conf6("all")},
		{&n.UnixConf, unixConf}, {&n.Ipv4Sysctl, ipv4Conf},
	} {
		var err error
		if *r.to, err = readConf(r.c); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// writeNetnsConf sets the calling thread's network namespace's settings
// from n, "all" before "default" as CRIU does.
func writeNetnsConf(n *netdev.NetnsEntry) error {
	for _, w := range []struct {
		c    confSet
		conf []*sysctl.SysctlEntry
	}{
		{conf4("all"), n.AllConf4}, {conf4("default"), n.DefConf4},
		{conf6("all"), n.AllConf6}, {conf6("default"), n.DefConf6},
		{unixConf, n.UnixConf}, {ipv4Conf, n.Ipv4Sysctl},
	} {
		if err := writeConf(w.c, w.conf); err != nil {
			return err
		}
	}
	return nil
}
