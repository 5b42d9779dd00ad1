package sched

import "container/heap"

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
