package store

// Batch collects changes for one commit; they become durable together.
// The zero value is ready to use.
//
// Every method encodes its arguments into the batch at once, so the caller
// may change a Record as soon as PutTask returns: the master builds batches
// under its own lock and mutates the records later from other goroutines.
// Changes apply in the order they were added, so an AckTask after a PutTask
// of the same id sees the new record.
//
// A Batch is not safe for concurrent use. After passing it to Commit, do not
// touch it until its done callback has run; then Reset may recycle it.
type Batch struct {
	ops    []op
	buf    []byte // keys and values of ops, back to back
	nextID uint64
	bytes  int // keys and values written, for Stats
}

type opKind uint8

const (
	opPutTask opKind = iota + 1 // the record, and the payload at buf[pay:end] (none if pay == end)
	opAckTask
	opDeleteTask
	opPutPush
	opDeletePush
	opPutState    // the record alone; the stored payload stays
	opPutValue    // a keyed value; pay holds its Bucket
	opDeleteValue // likewise
)

// op locates its key at buf[key:val] and its value at buf[val:end]. Offsets,
// not slices, because buf moves as it grows.
type op struct {
	kind          opKind
	key, val, end int
	pay           int // opPutTask: where the record ends and the payload's value begins; opPutValue, opDeleteValue: the Bucket
}

// room makes room in b for n more bytes, doubling its capacity when it
// must grow. slices.Grow grows as append does, by a quarter past 256
// elements: a batch of results, grown a record at a time to megabytes,
// was copied and zeroed about four times over (6 µs a 1 KiB result in a
// profile of a 10 M-task drain).
func room(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), max(2*cap(b), len(b)+n, 512))
	copy(nb, b)
	return nb
}

func (b *Batch) add(kind opKind, key int) {
	n := len(b.buf)
	b.ops = append(b.ops, op{kind: kind, key: key, val: n, end: n})
}

// PutTask inserts the new task r, payload included. A payload over
// InlinePayload bytes is written here only, into the payloads bucket: use
// PutState for every later change.
func (b *Batch) PutTask(r *Record) {
	b.buf = room(b.buf, 8+encodedLen(r)+1)
	key := len(b.buf)
	b.buf = taskKey(b.buf, r.ID)
	val := len(b.buf)
	b.buf = appendState(b.buf, r)
	pay := len(b.buf)
	if r.Payload != nil && len(r.Payload) > InlinePayload {
		b.buf = append(b.buf, payloadFormat)
		b.buf = append(b.buf, r.Payload...)
	}
	b.ops = append(b.ops, op{kind: opPutTask, key: key, val: val, pay: pay, end: len(b.buf)})
	b.bytes += len(b.buf) - key
}

// PutState overwrites the stored task's state with r's. A payload of at
// most InlinePayload bytes rides in the record, so r.Payload must be the
// task's payload; a larger one stays where PutTask put it and r.Payload
// is ignored. Either way a requeue, a retry or a result of a task with a
// large payload writes a small record. On an id not stored it stores a
// task without a large payload.
func (b *Batch) PutState(r *Record) {
	b.buf = room(b.buf, 8+encodedLen(r))
	key := len(b.buf)
	b.buf = taskKey(b.buf, r.ID)
	val := len(b.buf)
	b.buf = appendState(b.buf, r)
	b.ops = append(b.ops, op{kind: opPutState, key: key, val: val, end: len(b.buf)})
	b.bytes += len(b.buf) - key
}

// Bytes is the size of the keys and values the batch writes: what a
// commit of it costs beside bbolt's pages.
func (b *Batch) Bytes() int {
	if b == nil {
		return 0
	}
	return b.bytes
}

// AckTask marks the stored task as acknowledged by its application. It is
// applied to whatever record is stored when the batch commits; an id that is
// not stored then is ignored, because an acknowledgement may race with the
// task's deletion.
func (b *Batch) AckTask(id uint64) {
	key := len(b.buf)
	b.buf = taskKey(b.buf, id)
	b.add(opAckTask, key)
}

// DeleteTask removes a task; a missing id is not an error.
func (b *Batch) DeleteTask(id uint64) {
	key := len(b.buf)
	b.buf = taskKey(b.buf, id)
	b.add(opDeleteTask, key)
}

// PutPush records which ids an application's submit batch was given.
func (b *Batch) PutPush(p Push) {
	key := len(b.buf)
	b.buf = pushKey(b.buf, p.App, p.Seq)
	val := len(b.buf)
	b.buf = appendPushValue(b.buf, &p)
	b.ops = append(b.ops, op{kind: opPutPush, key: key, val: val, end: len(b.buf)})
	b.bytes += len(b.buf) - key
}

// DeletePush forgets a push; a missing one is not an error.
func (b *Batch) DeletePush(app string, seq uint64) {
	key := len(b.buf)
	b.buf = pushKey(b.buf, app, seq)
	b.add(opDeletePush, key)
}

// SetNextID raises the stored next task id to id. It never lowers it, so
// batches committed out of the order their ids were handed out cannot
// move it back.
func (b *Batch) SetNextID(id uint64) {
	b.nextID = max(b.nextID, id)
}

// Len is the number of changes in the batch; SetNextID counts as one
// however often it was called.
func (b *Batch) Len() int {
	if b == nil {
		return 0
	}
	n := len(b.ops)
	if b.nextID != 0 {
		n++
	}
	return n
}

// Reset empties the batch and keeps its memory for reuse.
func (b *Batch) Reset() {
	b.ops = b.ops[:0]
	b.buf = b.buf[:0]
	b.nextID = 0
	b.bytes = 0
}

func (b *Batch) key(o *op) []byte { return b.buf[o.key:o.val:o.val] }
func (b *Batch) val(o *op) []byte { return b.buf[o.val:o.end:o.end] }

// record and payload split an opPutTask's value.
func (b *Batch) record(o *op) []byte  { return b.buf[o.val:o.pay:o.pay] }
func (b *Batch) payload(o *op) []byte { return b.buf[o.pay:o.end:o.end] }
