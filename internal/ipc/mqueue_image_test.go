package ipc

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestMqueueImageRoundTrip(t *testing.T) {
	queues := []mqueue{
		{name: "a q\"ueue", uid: 1234, gid: 5678, mode: 0o604, maxmsg: 3, msgsize: 12000},
		{name: "q1", mode: 0o640, maxmsg: 6, msgsize: 100, msgs: []mqMessage{
			{prio: 7, data: []byte("urgent")}, {prio: 3, data: []byte{0, 1, 0, 255}}, {prio: 0}}},
	}
	got, err := decodeMqueues(bytes.NewReader(encodeMqueues(queues)))
	if err != nil {
		t.Fatal(err)
	}
	// An empty message comes back as no bytes.
	queues[1].msgs[2].data = nil
	if !reflect.DeepEqual(got, queues) {
		t.Fatalf("decoded %+v, want %+v", got, queues)
	}
}

func TestMqueueImageBad(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"msg 1 -\n", "line 1: a message before any queue"},
		{"queue q1 0 0 0600 1 10\n", "line 1: queue name"},
		{`queue "a/b" 0 0 0600 1 10`, "not a queue's"},
		{`queue "q" 0 0 0600 1`, "want UID GID MODE MAXMSG MSGSIZE"},
		{`queue "q" 0 0 0600 0 10`, "not a queue's"},
		{`queue "q" 0 0 0170000 1 10`, "not a queue's"},
		{"queue \"q\" 0 0 0600 1 10\nmsg 1 -\nmsg 2 -\n", "line 3: queue \"q\" holds at most 1 messages"},
		{"queue \"q\" 0 0 0600 1 2\nmsg 1 YWJj\n", "line 2: queue \"q\": a message of 3 bytes"},
		{"queue \"q\" 0 0 0600 1 2\nmsg 1 !!\n", "line 2: data"},
		{"queue \"q\" 0 0 0600 1 2\nmsg x -\n", "line 2: priority"},
		{"# c\n\nbogus\n", "line 3: neither a queue nor a message"},
	} {
		_, err := decodeMqueues(strings.NewReader(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.text, err, tc.want)
		}
	}
}

func TestNotifyPid(t *testing.T) {
	for info, want := range map[string]int{
		"QSIZE:0          NOTIFY:0     SIGNO:0     NOTIFY_PID:0     \n": 0,
		"QSIZE:11         NOTIFY:0     SIGNO:10    NOTIFY_PID:4242  \n": 4242,
		"": 0,
	} {
		if got := notifyPid(info); got != want {
			t.Errorf("notifyPid(%q) = %d, want %d", info, got, want)
		}
	}
}
