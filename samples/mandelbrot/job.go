//go:build !wasip1

package mandelbrot

import (
	"errors"
	"fmt"
	"sync"

	"github.com/anthill-project/anthill/appnode"
)

// Job is not part of a wasip1 build: samples/wasm/mandelbrot compiles the
// kernel (Render) for WebAssembly, and appnode's network stack has no
// place in a module.

// Job is the application side of the demo: an appnode.TaskSystem that
// hands out one task per tile, lazily, and paints each tile's result into
// the image as it arrives. Run it with appnode's Node.Run; then check Err
// and write Image.
type Job struct {
	tiles  []Tile
	next   int
	img    *Image
	module string // the kernel's WASM module, or "" for the native kind

	mu   sync.Mutex
	errs []error
}

// NewJob prepares the tiles of c; nothing is sent until Run asks. A c that
// fails Config.Validate makes a job whose every task fails.
func NewJob(c Config) *Job {
	c = c.WithDefaults()
	return &Job{tiles: c.Tiles(), img: NewImage(c)}
}

// NewWASMJob is NewJob whose tasks run the kernel as the WASM module of
// the given hash (samples/wasm/mandelbrot, uploaded to the master)
// instead of the slaves' built-in kind. The pixels are the same.
func NewWASMJob(c Config, module string) *Job {
	j := NewJob(c)
	j.module = module
	return j
}

// Total is the number of tasks the job makes.
func (j *Job) Total() int { return len(j.tiles) }

// Next implements appnode.TaskSystem.
func (j *Job) Next() *appnode.Task {
	if j.next == len(j.tiles) {
		return nil
	}
	t := j.tiles[j.next]
	j.next++
	if j.module != "" {
		return &appnode.Task{Module: j.module, Payload: t.Payload(), Value: t}
	}
	return &appnode.Task{Kind: Kind, Payload: t.Payload(), Value: t}
}

// Finished implements appnode.TaskSystem.
func (j *Job) Finished(t *appnode.Task, result []byte, err error) {
	tile, _ := t.Value.(Tile)
	if err == nil {
		err = j.img.Paint(tile, result)
	}
	if err != nil {
		j.mu.Lock()
		j.errs = append(j.errs, fmt.Errorf("tile at %d,%d: %w", tile.X, tile.Y, err))
		j.mu.Unlock()
	}
}

// Err reports the tiles that failed, if any.
func (j *Job) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return errors.Join(j.errs...)
}

// Image is the picture painted so far.
func (j *Job) Image() *Image { return j.img }
