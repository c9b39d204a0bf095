package migrate

import (
	"errors"
	"net"
	"testing"
	"time"
)

// pair is both ends of a control channel over a socket pair.
func pair(t *testing.T) (*channel, *channel) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return newChannel(a), newChannel(b)
}

// TestChannelRoundTrip: a message and the bytes after it arrive as sent.
func TestChannelRoundTrip(t *testing.T) {
	a, b := pair(t)
	go func() {
		a.queue(Msg{Op: opFile, Name: "core-1.img", Size: 3})
		a.w.WriteString("abc")
		a.send(Msg{Op: opEndFiles})
	}()
	m, err := b.expect(opFile, time.Second)
	if err != nil || m.Name != "core-1.img" || m.Size != 3 {
		t.Fatalf("got %+v, %v", m, err)
	}
	body := make([]byte, 3)
	if _, err := b.r.Read(body); err != nil || string(body) != "abc" {
		t.Fatalf("body %q, %v", body, err)
	}
	if _, err := b.expect(opEndFiles, time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestChannelRemoteError: an error message is a RemoteError carrying
// the peer's text; a closed peer is ErrClosed.
func TestChannelRemoteError(t *testing.T) {
	a, b := pair(t)
	go func() {
		a.send(Msg{Op: opError, Error: "restore: pid 7 is taken"})
		a.conn.Close()
	}()
	_, err := b.expect(opOK, time.Second)
	var remote *RemoteError
	if !errors.As(err, &remote) || remote.Msg != "restore: pid 7 is taken" {
		t.Fatalf("got %v, want the peer's error", err)
	}
	if _, err := b.recv(time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("after the close: %v, want ErrClosed", err)
	}
}

// TestChannelUnexpected: another message than the one expected is an
// error naming both.
func TestChannelUnexpected(t *testing.T) {
	a, b := pair(t)
	go a.send(Msg{Op: opCommit})
	if _, err := b.expect(opOK, time.Second); err == nil {
		t.Fatal("expect accepted another op")
	}
}

// TestValidName refuses paths as image names.
func TestValidName(t *testing.T) {
	for _, n := range []string{"", ".", "..", "a/b", "../x", "x\x00"} {
		if validName(n) == nil {
			t.Errorf("validName(%q) accepted it", n)
		}
	}
	if err := validName("pages-65537.img"); err != nil {
		t.Error(err)
	}
}
