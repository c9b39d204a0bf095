package ipc

// amber-mqueue-NSID.txt is text, a line each:
//
//	# comment
//	queue "NAME" UID GID MODE MAXMSG MSGSIZE
//	msg PRIORITY DATA
//
// NAME is quoted as Go quotes strings (a queue's name may hold spaces),
// MODE is octal, DATA is the message's bytes in standard base64, "-" for
// none. The msg lines after a queue line are its messages in the order
// a receiver takes them.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// encodeMqueues writes queues in the format above.
func encodeMqueues(queues []mqueue) []byte {
	var b bytes.Buffer
	b.WriteString("# amber: the POSIX message queues of an IPC namespace\n")
	b.WriteString("# queue NAME UID GID MODE MAXMSG MSGSIZE, then its messages in the order they are received:\n")
	b.WriteString("# msg PRIORITY BASE64-DATA\n")
	for _, q := range queues {
		fmt.Fprintf(&b, "queue %s %d %d %#o %d %d\n", strconv.Quote(q.name), q.uid, q.gid, q.mode, q.maxmsg, q.msgsize)
		for _, m := range q.msgs {
			data := "-"
			if len(m.data) > 0 {
				data = base64.StdEncoding.EncodeToString(m.data)
			}
			fmt.Fprintf(&b, "msg %d %s\n", m.prio, data)
		}
	}
	return b.Bytes()
}

// decodeMqueues reads the format above, and checks each queue holds its
// messages.
func decodeMqueues(r io.Reader) ([]mqueue, error) {
	var queues []mqueue
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if errors.Is(err, io.EOF) && line == "" {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		line = strings.TrimSpace(line)
		var lineErr error
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "queue "):
			var q mqueue
			q, lineErr = parseQueueLine(strings.TrimPrefix(line, "queue "))
			queues = append(queues, q)
		case strings.HasPrefix(line, "msg "):
			if len(queues) == 0 {
				lineErr = errors.New("a message before any queue")
				break
			}
			q := &queues[len(queues)-1]
			var m mqMessage
			if m, lineErr = parseMsgLine(strings.TrimPrefix(line, "msg ")); lineErr == nil {
				lineErr = q.add(m)
			}
		default:
			lineErr = errors.New("neither a queue nor a message")
		}
		if lineErr != nil {
			return nil, fmt.Errorf("line %d: %w", n, lineErr)
		}
	}
	return queues, nil
}

// parseQueueLine parses what follows "queue ".
func parseQueueLine(s string) (mqueue, error) {
	var q mqueue
	quoted, err := strconv.QuotedPrefix(s)
	if err != nil {
		return q, fmt.Errorf("queue name: %w", err)
	}
	q.name, _ = strconv.Unquote(quoted)
	if q.name == "" || strings.ContainsAny(q.name, "/\x00") || q.name == "." || q.name == ".." {
		return q, fmt.Errorf("queue name %s is not a queue's", quoted)
	}
	f := strings.Fields(s[len(quoted):])
	if len(f) != 5 {
		return q, fmt.Errorf("queue %s: want UID GID MODE MAXMSG MSGSIZE after the name", quoted)
	}
	uid, err1 := strconv.ParseUint(f[0], 10, 32)
	gid, err2 := strconv.ParseUint(f[1], 10, 32)
	mode, err3 := strconv.ParseUint(f[2], 0, 32)
	maxmsg, err4 := strconv.ParseInt(f[3], 10, 64)
	msgsize, err5 := strconv.ParseInt(f[4], 10, 64)
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return q, fmt.Errorf("queue %s: %w", quoted, err)
	}
	if mode&^0o7777 != 0 || maxmsg <= 0 || msgsize <= 0 {
		return q, fmt.Errorf("queue %s: mode %#o, at most %d messages of %d bytes: not a queue's", quoted, mode, maxmsg, msgsize)
	}
	q.uid, q.gid, q.mode, q.maxmsg, q.msgsize = uint32(uid), uint32(gid), uint32(mode), maxmsg, msgsize
	return q, nil
}

// parseMsgLine parses what follows "msg ".
func parseMsgLine(s string) (mqMessage, error) {
	var m mqMessage
	f := strings.Fields(s)
	if len(f) != 2 {
		return m, errors.New("want PRIORITY DATA")
	}
	prio, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return m, fmt.Errorf("priority: %w", err)
	}
	m.prio = uint32(prio)
	if f[1] != "-" {
		if m.data, err = base64.StdEncoding.DecodeString(f[1]); err != nil {
			return m, fmt.Errorf("data: %w", err)
		}
	}
	return m, nil
}

// add appends m to q's messages, if q can hold it.
func (q *mqueue) add(m mqMessage) error {
	if int64(len(q.msgs)) >= q.maxmsg {
		return fmt.Errorf("queue %q holds at most %d messages", q.name, q.maxmsg)
	}
	if int64(len(m.data)) > q.msgsize {
		return fmt.Errorf("queue %q: a message of %d bytes, more than its %d", q.name, len(m.data), q.msgsize)
	}
	q.msgs = append(q.msgs, m)
	return nil
}
