package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strings"
)

// bbolt trusts its file: it follows page numbers and offsets read from it
// through a memory map without checking them, so a damaged page makes it
// panic, loop until the stack overflows, or read past the map (a fault
// that kills the process, recover or not). verifyFile therefore reads the
// file itself, with bounds-checked reads and no memory map, and checks
// that its pages form the tree bbolt expects before bbolt walks it: every
// page number in range and of the right kind, every element inside its
// page, no page reached twice (no cycle), none both in use and free, none
// lost. The layout is bbolt's on-disk format (go.etcd.io/bbolt/internal/
// common), stable since bbolt 1.3.

const (
	pgBranch   = 0x01
	pgLeaf     = 0x02
	pgMeta     = 0x04
	pgFreelist = 0x10
	elemBucket = 0x01 // leaf element flag: the value is a bucket header

	pgHdrLen     = 16 // id u64, flags u16, count u16, overflow u32
	elemLen      = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHdrLen = 16 // root pgid u64, sequence u64
	metaLen      = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	maxDepth = 64 // levels of tree plus nested buckets; a token file has 2 to 4
)

// fileReport is what verifyFile saw, for the log line of a file moved aside.
type fileReport struct {
	size    int64 // bytes
	records int   // records of the store's bucket seen before any damage
}

type meta struct {
	magic, version, pageSize  uint32
	root, freelist, hwm, txid uint64
	valid                     bool
}

func readMeta(b []byte) meta {
	if len(b) < pgHdrLen+metaLen {
		return meta{}
	}
	m := b[pgHdrLen : pgHdrLen+metaLen]
	h := fnv.New64a()
	h.Write(m[:56])
	mt := meta{
		magic:    binary.LittleEndian.Uint32(m[0:]),
		version:  binary.LittleEndian.Uint32(m[4:]),
		pageSize: binary.LittleEndian.Uint32(m[8:]),
		root:     binary.LittleEndian.Uint64(m[16:]),
		freelist: binary.LittleEndian.Uint64(m[32:]),
		hwm:      binary.LittleEndian.Uint64(m[40:]),
		txid:     binary.LittleEndian.Uint64(m[48:]),
	}
	mt.valid = mt.magic == boltMagic && mt.version == boltVersion && binary.LittleEndian.Uint64(m[56:]) == h.Sum64()
	return mt
}

type verifier struct {
	ctx      context.Context
	f        *os.File
	size     int64
	psize    uint64
	hwm      uint64
	bucket   []byte
	seen     map[uint64]bool
	free     map[uint64]bool
	problems []string
	n        int
	records  int
}

// errStop ends a walk early (ctx done); the problems found so far stand.
var errStop = errors.New("stop")

func (v *verifier) fail(format string, args ...any) {
	v.n++
	if len(v.problems) < maxProblems {
		v.problems = append(v.problems, fmt.Sprintf(format, args...))
	}
}

// verifyFile checks the structure of the bbolt file at path, as described
// above, and returns an error wrapping ErrDamaged that lists what is
// wrong, or ctx's error. bucket is the store's bucket, whose records it
// counts. The caller holds the file's lock (shared or exclusive), so that
// no writer changes it meanwhile.
func verifyFile(ctx context.Context, path string, bucket []byte) (fileReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileReport{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileReport{}, err
	}
	v := &verifier{ctx: ctx, f: f, size: fi.Size(), bucket: bucket,
		seen: map[uint64]bool{0: true, 1: true}, free: map[uint64]bool{}}
	err = v.verify()
	rep := fileReport{size: v.size, records: v.records}
	if err != nil {
		return rep, err
	}
	if v.n > 0 {
		more := ""
		if v.n > len(v.problems) {
			more = fmt.Sprintf(" (and %d more)", v.n-len(v.problems))
		}
		return rep, fmt.Errorf("%w: %s%s", ErrDamaged, strings.Join(v.problems, "; "), more)
	}
	return rep, nil
}

// readAt reads n bytes at off, short only at the end of the file.
func (v *verifier) readAt(off int64, n int) []byte {
	if off < 0 || off >= v.size {
		return nil
	}
	b := make([]byte, min(int64(n), v.size-off))
	k, err := v.f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return b[:k]
	}
	return b[:k]
}

func (v *verifier) verify() error {
	// The page size, found as bbolt finds it: meta 0's if valid, else
	// meta 1's at the offsets bbolt tries.
	m0 := readMeta(v.readAt(0, 4096))
	psize := uint64(0)
	if m0.valid {
		psize = uint64(m0.pageSize)
	} else {
		for i := 0; i <= 14; i++ {
			pos := int64(1024) << i
			if pos >= v.size-1024 {
				break
			}
			if m := readMeta(v.readAt(pos, 4096)); m.valid {
				psize = uint64(m.pageSize)
				break
			}
		}
	}
	if psize == 0 {
		v.fail("no valid meta page (the file is %d bytes)", v.size)
		return nil
	}
	if psize < 1024 || psize > 1<<24 || psize&(psize-1) != 0 {
		v.fail("page size %d is not a power of two between 1 KiB and 16 MiB", psize)
		return nil
	}
	v.psize = psize
	m1 := readMeta(v.readAt(int64(psize), int(psize)))
	for i, m := range []meta{m0, m1} {
		if m.valid && uint64(m.pageSize) != psize {
			v.fail("meta page %d gives page size %d, not %d", i, m.pageSize, psize)
		}
	}
	for id := range uint64(2) {
		// bbolt checks a page's header each time it reads one, by
		// assertion; its own check reads both meta pages.
		hdr := v.readAt(int64(id*psize), pgHdrLen)
		if len(hdr) < pgHdrLen || binary.LittleEndian.Uint64(hdr) != id || binary.LittleEndian.Uint16(hdr[8:]) != pgMeta {
			v.fail("meta page %d has a damaged header", id)
		}
	}
	if v.n > 0 {
		return nil
	}
	m := m0
	if m1.txid > m0.txid && m1.valid || !m0.valid {
		m = m1
	}
	if !m.valid {
		v.fail("no valid meta page")
		return nil
	}
	v.hwm = m.hwm
	switch {
	case m.hwm < 3:
		v.fail("the meta page gives %d pages; a bbolt file has at least 3", m.hwm)
	case m.hwm > uint64(v.size)/psize:
		v.fail("the file is %d bytes, shorter than the %d pages of %d bytes its meta page gives (truncated?)", v.size, m.hwm, psize)
	case m.root < 2 || m.root >= m.hwm:
		v.fail("the root page %d is out of range [2, %d)", m.root, m.hwm)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.hwm):
		v.fail("the freelist page %d is out of range [2, %d)", m.freelist, m.hwm)
	}
	if v.n > 0 {
		return nil
	}
	if m.freelist != noFreelist {
		if err := v.readFreelist(m.freelist); err != nil {
			return err
		}
		if v.n > 0 {
			return nil
		}
	}
	if err := v.walkPage(m.root, 0, rootBucket); err != nil {
		return err
	}
	if v.n == 0 && m.freelist != noFreelist {
		lost := 0
		for id := uint64(2); id < v.hwm; id++ {
			if !v.seen[id] && !v.free[id] {
				lost++
			}
		}
		if lost > 0 {
			v.fail("%d of %d pages are neither in the tree nor free (part of the tree is lost)", lost, v.hwm)
		}
	}
	return nil
}

// readPage reads page id with its overflow pages and marks them in use.
// It returns nil, having noted the problem, for a page that cannot be used.
func (v *verifier) readPage(id uint64, what string) ([]byte, error) {
	if err := v.ctx.Err(); err != nil {
		return nil, errStop
	}
	if id < 2 || id >= v.hwm {
		v.fail("%s page %d is out of range [2, %d)", what, id, v.hwm)
		return nil, nil
	}
	hdr := v.readAt(int64(id*v.psize), pgHdrLen)
	if len(hdr) < pgHdrLen {
		v.fail("%s page %d is past the end of the file", what, id)
		return nil, nil
	}
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		v.fail("%s page %d says it is page %d", what, id, got)
		return nil, nil
	}
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if id+overflow >= v.hwm {
		v.fail("%s page %d overflows %d pages, past the last page %d", what, id, overflow, v.hwm-1)
		return nil, nil
	}
	for p := id; p <= id+overflow; p++ {
		switch {
		case v.seen[p]:
			v.fail("page %d is reached twice (from %s page %d)", p, what, id)
			return nil, nil
		case v.free[p]:
			v.fail("page %d is both in use (%s page %d) and free", p, what, id)
			return nil, nil
		}
		v.seen[p] = true
	}
	b := v.readAt(int64(id*v.psize), int((overflow+1)*v.psize))
	if uint64(len(b)) < (overflow+1)*v.psize {
		v.fail("%s page %d is cut short by the end of the file", what, id)
		return nil, nil
	}
	return b, nil
}

func (v *verifier) readFreelist(id uint64) error {
	b, err := v.readPage(id, "freelist")
	if b == nil {
		return err
	}
	if flags := binary.LittleEndian.Uint16(b[8:]); flags != pgFreelist {
		v.fail("freelist page %d has type %#x", id, flags)
		return nil
	}
	start, count := uint64(pgHdrLen), uint64(binary.LittleEndian.Uint16(b[10:]))
	if count == 0xFFFF {
		count = binary.LittleEndian.Uint64(b[pgHdrLen:])
		start += 8
	}
	if count > (uint64(len(b))-start)/8 {
		v.fail("freelist page %d lists %d pages, more than it holds", id, count)
		return nil
	}
	for i := range count {
		p := binary.LittleEndian.Uint64(b[start+8*i:])
		switch {
		case p < 2 || p >= v.hwm:
			v.fail("the freelist frees page %d, out of range [2, %d)", p, v.hwm)
		case v.free[p]:
			v.fail("the freelist frees page %d twice", p)
		case v.seen[p]:
			v.fail("the freelist frees page %d, its own", p)
		}
		v.free[p] = true
	}
	return nil
}

// bucketKind says which bucket a page belongs to.
type bucketKind int

const (
	rootBucket  bucketKind = iota // the file's root bucket, which holds the store's
	storeBucket                   // the store's, whose records are counted
	otherBucket
)

// walkPage checks page id, the root or an inner page of a bucket of kind,
// and everything below it.
func (v *verifier) walkPage(id uint64, depth int, kind bucketKind) error {
	if depth > maxDepth {
		v.fail("the tree is deeper than %d levels at page %d", maxDepth, id)
		return nil
	}
	b, err := v.readPage(id, "tree")
	if b == nil {
		return err
	}
	return v.walkNode(b, id, depth, kind)
}

// walkNode checks the branch or leaf page in b (a page read from the file,
// or an inline bucket's page inside a value, id 0) and recurses.
func (v *verifier) walkNode(b []byte, id uint64, depth int, kind bucketKind) error {
	flags := binary.LittleEndian.Uint16(b[8:])
	count := int(binary.LittleEndian.Uint16(b[10:]))
	if flags != pgBranch && flags != pgLeaf {
		v.fail("tree page %d has type %#x, neither branch nor leaf", id, flags)
		return nil
	}
	if id == 0 && flags != pgLeaf {
		v.fail("an inline bucket's page is a branch")
		return nil
	}
	if pgHdrLen+count*elemLen > len(b) {
		v.fail("page %d lists %d elements, more than it holds", id, count)
		return nil
	}
	if flags == pgBranch && count == 0 {
		v.fail("branch page %d is empty", id)
		return nil
	}
	var prev []byte
	for i := range count {
		e := pgHdrLen + i*elemLen
		el := b[e : e+elemLen]
		var kpos, ksize, vsize uint64
		if flags == pgBranch {
			kpos, ksize = uint64(binary.LittleEndian.Uint32(el[0:])), uint64(binary.LittleEndian.Uint32(el[4:]))
		} else {
			kpos, ksize, vsize = uint64(binary.LittleEndian.Uint32(el[4:])), uint64(binary.LittleEndian.Uint32(el[8:])), uint64(binary.LittleEndian.Uint32(el[12:]))
		}
		kstart := uint64(e) + kpos
		if ksize == 0 || kstart+ksize+vsize > uint64(len(b)) {
			v.fail("element %d of page %d lies outside the page (or has an empty key)", i, id)
			return nil
		}
		key := b[kstart : kstart+ksize]
		if prev != nil && bytes.Compare(prev, key) >= 0 {
			v.fail("the keys of page %d are out of order at element %d", id, i)
			return nil
		}
		prev = key
		if flags == pgBranch {
			if err := v.walkPage(binary.LittleEndian.Uint64(el[8:]), depth+1, kind); err != nil {
				return err
			}
			continue
		}
		value := b[kstart+ksize : kstart+ksize+vsize]
		if binary.LittleEndian.Uint32(el[0:])&elemBucket == 0 {
			if kind == storeBucket {
				v.records++
			}
			continue
		}
		if len(value) < bucketHdrLen {
			v.fail("a bucket header in page %d is %d bytes, short of %d", id, len(value), bucketHdrLen)
			return nil
		}
		child := otherBucket
		if kind == rootBucket && bytes.Equal(key, v.bucket) {
			child = storeBucket
		}
		if root := binary.LittleEndian.Uint64(value); root != 0 {
			if err := v.walkPage(root, depth+1, child); err != nil {
				return err
			}
			continue
		}
		inline := value[bucketHdrLen:]
		if len(inline) < pgHdrLen {
			v.fail("an inline bucket in page %d is %d bytes, short of a page header", id, len(inline))
			return nil
		}
		if depth+1 > maxDepth {
			v.fail("buckets nest deeper than %d levels", maxDepth)
			return nil
		}
		if err := v.walkNode(inline, 0, depth+1, child); err != nil {
			return err
		}
	}
	return nil
}
