package dump

import (
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/stats"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/mem"
)

// dumpStats are the figures of CRIU's stats-dump image, which Podman
// reads (checkpoint --print-stats) and puts into an exported checkpoint.
type dumpStats struct {
	freezeStart, frozenAt time.Time
	memdump               time.Duration // dumping memory, pages written as read
	scanned, inParent     uint64
	written               uint64
	shmemWritten          uint64 // pages of shared memory objects, dumped once for the tree
}

// addMemory counts one process's memory dump, which took took.
func (s *dumpStats) addMemory(st mem.PagesStats, took time.Duration) {
	s.memdump += took
	s.scanned += st.Scanned
	s.inParent += st.InParent
	s.written += st.Pages
}

// writeStats writes stats-dump into opts.StatsDir, if set, once the
// tree is released or killed: as CRIU, a failure is only logged.
func (d *dumper) writeStats() {
	if d.opts.StatsDir == "" {
		return
	}
	s := &d.stats
	us := func(t time.Duration) *uint32 { return proto.Uint32(uint32(t.Microseconds())) }
	e := &stats.StatsEntry{Dump: &stats.DumpStatsEntry{
		FreezingTime: us(s.frozenAt.Sub(s.freezeStart)), FrozenTime: us(time.Since(s.frozenAt)),
		MemdumpTime: us(s.memdump), MemwriteTime: us(s.memdump), // amber writes pages as it reads them
		PagesScanned: proto.Uint64(s.scanned), PagesSkippedParent: proto.Uint64(s.inParent),
		PagesWritten: proto.Uint64(s.written), PagesLazy: proto.Uint64(0),
		// zdtm checks that shpages_written and pages_written add up to
		// the size of the pages images, and fails on a missing field.
		ShpagesScanned: proto.Uint64(s.shmemWritten), ShpagesSkippedParent: proto.Uint64(0),
		ShpagesWritten: proto.Uint64(s.shmemWritten),
	}}
	dir, err := image.OpenDir(d.opts.StatsDir)
	if err == nil {
		err = image.WriteFile(dir.StatsDumpPath(), image.Stats, e)
		dir.Close()
	}
	if err != nil {
		d.log.Warnf("write stats-dump: %v", err)
	}
}
