package netfilter

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"syscall"

	"amber/internal/image"
)

// The rules of a network namespace, in CRIU's images: iptables-ID.img
// and ip6tables-ID.img, what iptables-save and ip6tables-save print of
// the kernel's legacy (x_tables) rules, and nftables-ID.img, what "nft
// list ruleset" prints. Rules that iptables made through its nf_tables
// backend (iptables-nft, Debian's default) are nftables rules: they are
// in the nftables image, which is why CRIU saves the legacy ones only
// with a legacy iptables, and amber too.

// legacyTools are the commands that may save or restore legacy rules of
// one family, in the order CRIU tries them: the plain command if it is
// not the nf_tables one, else its -legacy twin.
func legacyTools(ipv6, restore bool) []string {
	base := "iptables"
	if ipv6 {
		base = "ip6tables"
	}
	verb := "-save"
	if restore {
		verb = "-restore"
	}
	return []string{base + verb, base + "-legacy" + verb}
}

// LegacyTool is the command that saves (or restores) the legacy rules
// of one family, "" if none is installed.
func LegacyTool(ipv6, restore bool) string {
	for _, t := range legacyTools(ipv6, restore) {
		out, err := exec.Command(t, "-V").CombinedOutput()
		if err == nil && !bytes.Contains(out, []byte("nf_tables")) {
			return t
		}
	}
	return ""
}

// HasNft tells whether the nft command is installed.
func HasNft() bool {
	_, err := exec.LookPath("nft")
	return err == nil
}

// legacyImage is one family's legacy rules image.
type legacyImage struct {
	ipv6 bool
	path image.Path
}

func legacyImages(dir image.Dir, id uint32) []legacyImage {
	return []legacyImage{{false, dir.IptablesPath(id)}, {true, dir.Ip6tablesPath(id)}}
}

// DumpRules saves the rules of the calling thread's network namespace
// as network namespace id's: the legacy ones of each family if a legacy
// iptables is installed, the nftables ones if nft is.
func DumpRules(dir image.Dir, id uint32) error {
	for _, li := range legacyImages(dir, id) {
		tool := LegacyTool(li.ipv6, false)
		if tool == "" {
			continue
		}
		out, err := output(exec.Command(tool))
		if err != nil {
			return err
		}
		if err := li.path.WriteFile(out); err != nil {
			return err
		}
	}
	if !HasNft() {
		return nil
	}
	out, err := output(exec.Command("nft", "list", "ruleset"))
	if err != nil {
		return err
	}
	return dir.NftablesPath(id).WriteFile(out)
}

// RestoreRules loads network namespace id's rules into the calling
// thread's network namespace: first the legacy ones, then the nftables
// ones, as CRIU. An image that is missing or empty has nothing to load;
// one that is not needs its tool.
func RestoreRules(dir image.Dir, id uint32) error {
	for _, li := range legacyImages(dir, id) {
		rules, err := readImage(li.path)
		if err != nil {
			return err
		}
		if len(rules) == 0 {
			continue
		}
		tool := LegacyTool(li.ipv6, true)
		if tool == "" {
			return fmt.Errorf("%s: legacy iptables rules, and no %s installed to restore them",
				li.path, strings.Join(legacyTools(li.ipv6, true), " or "))
		}
		if err := run(tool, string(rules), "-w"); err != nil {
			return fmt.Errorf("%s: %w", li.path, err)
		}
	}
	p := dir.NftablesPath(id)
	rules, err := readImage(p)
	if err != nil || len(rules) == 0 {
		return err
	}
	if err := nft(string(rules)); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// readImage reads a rules image whole; nothing if it is missing.
func readImage(p image.Path) ([]byte, error) {
	f, err := p.OpenContents()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b.Bytes(), nil
}

// output runs cmd and returns what it printed; its error output goes
// into the error.
func output(cmd *exec.Cmd) ([]byte, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// CheckLegacy says whether amber can save and restore legacy rules of
// both families here: the tools LegacyTool finds.
func CheckLegacy() error {
	for _, ipv6 := range []bool{false, true} {
		for _, restore := range []bool{false, true} {
			if LegacyTool(ipv6, restore) == "" {
				return fmt.Errorf("none of %s is a legacy (x_tables) iptables", strings.Join(legacyTools(ipv6, restore), ", "))
			}
		}
	}
	return nil
}

// CheckNft says whether amber can save and restore nftables rules
// here: nft is installed and lists a ruleset.
func CheckNft() error {
	_, err := output(exec.Command("nft", "list", "tables"))
	return err
}

// CheckNftLock says whether LockConns with NFTables works here: nft
// makes sets of concatenated types (Linux 4.1+), tried in a network
// namespace of its own that dies with the nft process.
func CheckNftLock() error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader("create table inet CRIU\nadd set inet CRIU conn { type ipv4_addr . inet_service; }\n")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	_, err := output(cmd)
	return err
}
