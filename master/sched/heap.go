package sched

import (
	"container/heap"
	"slices"
)

// indexed is a binary heap whose elements remember their position (index
// plus one in the int slot returns; zero while out of the heap), so one can
// leave from the middle in O(log n). The priority strategy and the retry
// queue both need that.
type indexed[T any] struct {
	items []T
	less  func(a, b T) bool
	slot  func(T) *int
}

func (h *indexed[T]) Len() int           { return len(h.items) }
func (h *indexed[T]) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *indexed[T]) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.slot(h.items[i]), *h.slot(h.items[j]) = i+1, j+1
}

// Push and Pop serve container/heap; use push, pop and remove.
func (h *indexed[T]) Push(x any) {
	v := x.(T)
	*h.slot(v) = len(h.items) + 1
	h.items = append(h.items, v)
}

func (h *indexed[T]) Pop() any {
	n := len(h.items) - 1
	v := h.items[n]
	var zero T
	h.items[n] = zero
	h.items = h.items[:n]
	*h.slot(v) = 0
	return v
}

func (h *indexed[T]) push(v T) { heap.Push(h, v) }
func (h *indexed[T]) pop() T   { return heap.Pop(h).(T) }
func (h *indexed[T]) peek() T  { return h.items[0] }

// remove takes v out if it is in the heap.
func (h *indexed[T]) remove(v T) {
	if i := *h.slot(v); i > 0 {
		heap.Remove(h, i-1)
	}
}

// before orders the values of a values heap: *T's before(other) reports
// that it comes out first.
type before[T any] interface {
	*T
	before(*T) bool
}

// values is a binary heap of values, not pointers: a queue of millions
// costs its items and nothing for the garbage collector to scan. Nothing
// leaves from the middle; filter drops many at once.
type values[T any, P before[T]] struct{ items []T }

func (h *values[T, P]) less(i, j int) bool { return P(&h.items[i]).before(&h.items[j]) }

func (h *values[T, P]) push(v T) {
	h.items = append(h.items, v)
	for i := len(h.items) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *values[T, P]) peek() *T { return &h.items[0] }

func (h *values[T, P]) pop() T {
	v := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	var zero T
	h.items[last] = zero
	h.items = h.items[:last]
	if last > 0 {
		h.down(0)
	}
	return v
}

// filter keeps the items keep accepts, and the heap's order.
func (h *values[T, P]) filter(keep func(*T) bool) {
	h.items = slices.DeleteFunc(h.items, func(v T) bool { return !keep(&v) })
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *values[T, P]) down(i int) {
	for n := len(h.items); ; {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}
