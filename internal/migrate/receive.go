package migrate

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"amber/internal/compel"
	"amber/internal/image"
	"amber/internal/log"
	"amber/internal/pageserver"
	"amber/internal/restore"
)

// ReceiveOptions are amber receive's settings.
type ReceiveOptions struct {
	Address   string // where to listen ("" for every address)
	Port      int
	ImagesDir string // the chain's directories are made in it
	// KeepImages keeps the received images, after a restore or a failure.
	KeepImages bool
	// TrustImages and SkipFileCheck are passed to the restore.
	TrustImages   bool
	SkipFileCheck bool
	Timeout       time.Duration // bounds each wait for the source
	Log           *log.Logger
	// Ready, if set, is called once amber listens.
	Ready func() error
	// Fault, if set, is called at named points (tests kill amber there:
	// "pages-received", "restore-requested", "restored").
	Fault func(point string)
}

// Received tells what a migration brought.
type Received struct {
	Pid int // the restored root
}

// errSourceGone is a control channel closed before the restore.
var errSourceGone = errors.New("the source amber went away before the restore")

// receiver is the destination's side of one migration.
type receiver struct {
	opts ReceiveOptions
	log  *log.Logger
	ln   *net.TCPListener
	ch   *channel
	peer net.IP
	root string     // the images directory, absolute
	dirs []string   // the directories made, in chain order
	cur  *image.Dir // the chain's last directory, open
	// src is the source's hello: its host and the dump's settings.
	src Msg
	// complete says the chain's final directory has every image: a
	// restore could use it.
	complete bool
	// keep leaves the images in place when the session ends: a failed
	// restore on one host, whose source restores from them.
	keep bool
	// guardStart is the guard of a lazy restore, started at the first
	// pages (startGuardAhead), until the restore takes it.
	guardStart chan guardStart
}

// Receive listens, takes one migration and restores its tree. On any
// failure before the tree runs, it leaves nothing behind: no task, no
// images.
func Receive(o ReceiveOptions) (Received, error) {
	if o.Log == nil {
		o.Log = log.Discard()
	}
	if o.Timeout == 0 {
		o.Timeout = compel.DefaultTimeout
	}
	root, err := filepath.Abs(o.ImagesDir)
	if err != nil {
		return Received{}, err
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return Received{}, fmt.Errorf("receive: images directory %s: not a directory (%v)", o.ImagesDir, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.Address, strconv.Itoa(o.Port)))
	if err != nil {
		return Received{}, fmt.Errorf("receive: %w", err)
	}
	defer ln.Close()
	// The restore runs while the tree is down: the protobuf coders it
	// reads the images with are built now, not then.
	image.Warm()
	r := &receiver{opts: o, log: o.Log, ln: ln.(*net.TCPListener), root: root}
	o.Log.Infof("receive: listening on %s, images into %s", ln.Addr(), root)
	if o.Ready != nil {
		if err := o.Ready(); err != nil {
			return Received{}, err
		}
	}
	res, err := r.run()
	r.dropGuard()
	r.closeDir()
	if !r.keep && !o.KeepImages {
		r.removeDirs()
	}
	if err != nil {
		return res, fmt.Errorf("receive: %w", err)
	}
	return res, nil
}

// run accepts the control channel and serves it.
func (r *receiver) run() (Received, error) {
	conn, err := r.ln.Accept()
	if err != nil {
		return Received{}, fmt.Errorf("accept: %w", err)
	}
	defer conn.Close()
	r.peer = conn.RemoteAddr().(*net.TCPAddr).IP
	r.ch = newChannel(conn)
	r.log.Infof("receive: migration from %s", conn.RemoteAddr())
	res, err := r.session()
	if err != nil {
		var remote *RemoteError
		var sent *sentError
		if !errors.As(err, &remote) && !errors.As(err, &sent) && !errors.Is(err, ErrClosed) {
			r.ch.sendError(err)
		}
	}
	return res, err
}

// session serves the requests of the control channel until the restore.
func (r *receiver) session() (Received, error) {
	if err := r.hello(); err != nil {
		return Received{}, err
	}
	var batch error // the first failure of a file batch
	for {
		m, err := r.ch.recv(0)
		if errors.Is(err, ErrClosed) && r.complete {
			return r.orphaned()
		}
		if errors.Is(err, ErrClosed) {
			return Received{}, errSourceGone
		}
		if err != nil {
			return Received{}, fmt.Errorf("control channel: %w", err)
		}
		switch m.Op {
		case opPages:
			err = r.pages(m)
		case opFile:
			if ferr := r.file(m); ferr != nil && batch == nil {
				batch = ferr
			}
		case opEndFiles:
			err, batch = batch, nil
			if err == nil {
				r.complete = r.last() == "final"
				err = r.ch.send(Msg{Op: opOK})
			}
		case opRestore:
			return r.restore(m)
		default:
			err = fmt.Errorf("unexpected request %q", m.Op)
		}
		if err != nil {
			return Received{}, err
		}
	}
}

// hello checks the source's version and answers with this host's boot id
// and images directory.
func (r *receiver) hello() error {
	m, err := r.ch.expect(opHello, r.opts.Timeout)
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	r.src = m
	if m.Version != Version {
		return fmt.Errorf("the source speaks version %d of the protocol, this amber %d", m.Version, Version)
	}
	boot, err := bootID()
	if err != nil {
		return err
	}
	return r.ch.send(Msg{Op: opOK, Version: Version, BootID: boot, Dir: r.root})
}

// pages makes the next directory of the chain and receives one page
// server session into it, on a second connection from the source's host.
func (r *receiver) pages(m Msg) error {
	if err := validName(m.Dir); err != nil {
		return err
	}
	if want := r.last(); m.Parent != want {
		return fmt.Errorf("pages for %s on top of %q: the chain here ends at %q", m.Dir, m.Parent, want)
	}
	dir, err := r.makeDir(m.Dir)
	if err != nil {
		return err
	}
	r.startGuardAhead()
	if m.Parent != "" {
		if err := dir.LinkParent(filepath.Join("..", m.Parent)); err != nil {
			return err
		}
	}
	if err := r.ch.send(Msg{Op: opOK}); err != nil {
		return err
	}
	conn, err := r.acceptPages()
	if err != nil {
		return err
	}
	defer conn.Close()
	st, err := pageserver.Serve(conn, dir, r.log)
	if err != nil {
		return fmt.Errorf("pages of %s: %w", m.Dir, err)
	}
	r.log.Infof("receive: %s: %d pages, %d left to %s", m.Dir, st.Pages, st.Holes, m.Parent)
	r.fault("pages-received")
	return r.ch.send(Msg{Op: opOK, Pages: st.Pages})
}

// acceptPages takes the page server connection, which must come from the
// control channel's host within the timeout.
func (r *receiver) acceptPages() (net.Conn, error) {
	if r.opts.Timeout > 0 {
		r.ln.SetDeadline(time.Now().Add(r.opts.Timeout))
		defer r.ln.SetDeadline(time.Time{})
	}
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			return nil, fmt.Errorf("accept the page connection: %w", err)
		}
		if ip := conn.RemoteAddr().(*net.TCPAddr).IP; ip.Equal(r.peer) {
			return conn, nil
		}
		r.log.Warnf("receive: refused a connection from %s during the migration from %s", conn.RemoteAddr(), r.peer)
		conn.Close()
	}
}

// fault calls the Fault hook, if any.
func (r *receiver) fault(point string) {
	if r.opts.Fault != nil {
		r.opts.Fault(point)
	}
}

// last is the name of the chain's last directory, "" before the first.
func (r *receiver) last() string {
	if len(r.dirs) == 0 {
		return ""
	}
	return filepath.Base(r.dirs[len(r.dirs)-1])
}

// makeDir creates the chain's next directory (which must not exist) and
// opens it as the current one.
func (r *receiver) makeDir(name string) (image.Dir, error) {
	path := filepath.Join(r.root, name)
	if err := os.Mkdir(path, 0o700); err != nil {
		return image.Dir{}, fmt.Errorf("images of %s: %w", name, err)
	}
	r.dirs = append(r.dirs, path)
	r.closeDir()
	dir, err := image.OpenDir(path)
	if err != nil {
		return image.Dir{}, err
	}
	r.cur = &dir
	return dir, nil
}

// file writes one image into the current directory. Its bytes are read
// off the channel even when it cannot be written, so that the stream
// stays in step.
func (r *receiver) file(m Msg) error {
	if m.Size < 0 {
		return fmt.Errorf("file %s: bad size %d", m.Name, m.Size)
	}
	body := io.LimitReader(r.ch.r, m.Size)
	defer io.Copy(io.Discard, body)
	if err := validName(m.Name); err != nil {
		return err
	}
	if r.cur == nil {
		return fmt.Errorf("file %s before any pages", m.Name)
	}
	f, err := r.cur.File(m.Name).Create()
	if err != nil {
		return err
	}
	n, err := io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != m.Size {
		err = fmt.Errorf("the connection closed after %d of its %d bytes", n, m.Size)
	}
	if err != nil {
		return fmt.Errorf("file %s: %w", m.Name, err)
	}
	return nil
}

func (r *receiver) closeDir() {
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
}

// removeDirs removes every directory of the chain made here.
func (r *receiver) removeDirs() {
	for _, d := range r.dirs {
		if err := os.RemoveAll(d); err != nil {
			r.log.Warnf("receive: remove %s: %v", d, err)
		}
	}
	r.dirs = nil
}

// restoreOptions are the restore's settings for the images received.
func (r *receiver) restoreOptions() restore.Options {
	m := r.src
	return restore.Options{ImagesDir: r.dirs[len(r.dirs)-1], Detach: true, ShellJob: m.ShellJob,
		TCPEstablished: m.TCPEstablished, TCPClose: m.TCPClose, FileLocks: m.FileLocks,
		TrustImages: r.opts.TrustImages, SkipFileCheck: r.opts.SkipFileCheck, Log: r.log}
}
