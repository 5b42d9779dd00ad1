package mandelbrot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/anthill-project/anthill/appnode"
)

func TestWithDefaults(t *testing.T) {
	got := Config{}.WithDefaults()
	want := Config{Width: 1600, Height: 1000, TileSize: 100, CenterX: -0.75, Scale: 0.0021875, MaxIter: 500}
	if got != want {
		t.Fatalf("Config{}.WithDefaults() = %+v, want %+v", got, want)
	}
	// Set fields are kept; only the zero ones are filled.
	c := Config{Width: 10, Height: 20, TileSize: 3, CenterY: 0.5, Scale: 0.01, MaxIter: 7}.WithDefaults()
	if c != (Config{Width: 10, Height: 20, TileSize: 3, CenterY: 0.5, Scale: 0.01, MaxIter: 7}) {
		t.Fatalf("WithDefaults changed set fields: %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{}, {MaxIter: 100000}, {Width: 1600, TileSize: 5000}, {Width: 1 << 16, Height: 1}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for name, c := range map[string]Config{
		"tile too big":      {Width: 5000, TileSize: 4097},
		"image too wide":    {Width: 1<<16 + 1},
		"too many iterates": {MaxIter: 100001},
		"nan centre":        {CenterX: math.NaN()},
		"infinite scale":    {Scale: math.Inf(1)},
		"scale overflows":   {Scale: math.MaxFloat64 / 100},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: %+v accepted", name, c)
		}
	}
}

func TestTilesCoverTheImageOnce(t *testing.T) {
	for _, c := range []Config{
		{},                                       // 1600x1000 in 100s: an exact grid
		{Width: 100, Height: 100, TileSize: 100}, // one tile
		{Width: 333, Height: 101, TileSize: 50},  // clipped right and bottom
		{Width: 7, Height: 3, TileSize: 100},     // tile larger than the image
		{Width: 1, Height: 1, TileSize: 1},
		{Width: 250, Height: 1, TileSize: 64},
	} {
		c = c.WithDefaults()
		name := fmt.Sprintf("%dx%d/%d", c.Width, c.Height, c.TileSize)
		tiles := c.Tiles()
		if want := ceilDiv(c.Width, c.TileSize) * ceilDiv(c.Height, c.TileSize); len(tiles) != want {
			t.Errorf("%s: %d tiles, want %d", name, len(tiles), want)
		}
		seen := make([]int, c.Width*c.Height)
		for i, tl := range tiles {
			if tl.W < 1 || tl.H < 1 || tl.W > c.TileSize || tl.H > c.TileSize {
				t.Fatalf("%s: tile %+v has a bad size", name, tl)
			}
			if tl.X < 0 || tl.Y < 0 || tl.X+tl.W > c.Width || tl.Y+tl.H > c.Height {
				t.Fatalf("%s: tile %+v leaves the image", name, tl)
			}
			if i > 0 { // row-major: top to bottom, left to right within a row
				p := tiles[i-1]
				if tl.Y < p.Y || (tl.Y == p.Y && tl.X <= p.X) {
					t.Fatalf("%s: tile %d at %d,%d follows %d,%d", name, i, tl.X, tl.Y, p.X, p.Y)
				}
			}
			view := tl
			view.X, view.Y, view.W, view.H = 0, 0, 0, 0
			if view != (Tile{Width: c.Width, Height: c.Height, CenterX: c.CenterX, CenterY: c.CenterY, Scale: c.Scale, MaxIter: c.MaxIter}) {
				t.Fatalf("%s: tile %+v does not carry the config's view", name, tl)
			}
			for y := tl.Y; y < tl.Y+tl.H; y++ {
				for x := tl.X; x < tl.X+tl.W; x++ {
					seen[y*c.Width+x]++
				}
			}
		}
		for i, n := range seen {
			if n != 1 {
				t.Fatalf("%s: pixel %d,%d covered %d times", name, i%c.Width, i/c.Width, n)
			}
		}
	}
}

func ExampleConfig_Tiles() {
	for _, t := range (Config{Width: 250, Height: 120, TileSize: 100}).Tiles() {
		fmt.Printf("%dx%d at %d,%d\n", t.W, t.H, t.X, t.Y)
	}
	// Output:
	// 100x100 at 0,0
	// 100x100 at 100,0
	// 50x100 at 200,0
	// 100x20 at 0,100
	// 100x20 at 100,100
	// 50x20 at 200,100
}

func TestPayloadRoundTrip(t *testing.T) {
	var tiles []Tile
	for _, c := range []Config{{}, {Width: 250, Height: 130, TileSize: 64, MaxIter: 100000},
		{CenterX: -0.7435669, CenterY: -0.1314023, Scale: 1e-12, Width: 1 << 16, Height: 1 << 16, TileSize: 4096}} {
		tiles = append(tiles, c.Tiles()...)
	}
	for _, tl := range tiles {
		p := tl.Payload()
		if len(p) != payloadSize {
			t.Fatalf("payload of %+v is %d bytes, want %d", tl, len(p), payloadSize)
		}
		got, err := ParseTile(p)
		if err != nil || got != tl {
			t.Fatalf("round trip of %+v: got %+v, %v", tl, got, err)
		}
	}
}

func TestParseTileRejects(t *testing.T) {
	good := Config{}.Tiles()[17]
	with := func(f func(*Tile)) []byte { x := good; f(&x); return x.Payload() }
	for name, p := range map[string][]byte{
		"empty":              nil,
		"truncated":          good.Payload()[:payloadSize-1],
		"trailing byte":      append(good.Payload(), 0),
		"unknown version":    append([]byte{2}, good.Payload()[1:]...),
		"empty tile":         with(func(x *Tile) { x.W = 0 }),
		"huge tile":          with(func(x *Tile) { x.W, x.Width = 5000, 6000 }),
		"huge image":         with(func(x *Tile) { x.Width = 1<<16 + 1 }),
		"wrapped negative":   with(func(x *Tile) { x.X = -1 }),
		"off the image":      with(func(x *Tile) { x.X = x.Width - x.W + 1 }),
		"no iterations":      with(func(x *Tile) { x.MaxIter = 0 }),
		"too many":           with(func(x *Tile) { x.MaxIter = 100001 }),
		"nan centre":         with(func(x *Tile) { x.CenterY = math.NaN() }),
		"infinite centre":    with(func(x *Tile) { x.CenterX = math.Inf(-1) }),
		"nan scale":          with(func(x *Tile) { x.Scale = math.NaN() }),
		"zero scale":         with(func(x *Tile) { x.Scale = 0 }),
		"negative scale":     with(func(x *Tile) { x.Scale = -1 }),
		"corners overflow":   with(func(x *Tile) { x.Scale = math.MaxFloat64 / 100 }),
		"corner overflows":   with(func(x *Tile) { x.CenterX, x.Scale = math.MaxFloat64, math.MaxFloat64/1e6 }),
		"all ones (max u32)": bytes.Repeat([]byte{0xff}, payloadSize),
	} {
		if tl, err := ParseTile(p); err == nil {
			t.Errorf("%s: accepted as %+v", name, tl)
		}
	}
}

// pixelOf returns where the complex number re+im·i falls in the image of c.
func pixelOf(c Config, re, im float64) (x, y int) {
	c = c.WithDefaults()
	x0, y0 := c.Tiles()[0].origin()
	return int(math.Round((re - x0) / c.Scale)), int(math.Round((y0 - im) / c.Scale))
}

// renderPixel renders the tile of c holding pixel x, y and returns that
// pixel's RGBA.
func renderPixel(t *testing.T, c Config, x, y int) []byte {
	t.Helper()
	for _, tl := range c.Tiles() {
		if x >= tl.X && x < tl.X+tl.W && y >= tl.Y && y < tl.Y+tl.H {
			pix, err := Render(context.Background(), tl.Payload())
			if err != nil {
				t.Fatal(err)
			}
			off := ((y-tl.Y)*tl.W + x - tl.X) * 4
			return pix[off : off+4]
		}
	}
	t.Fatalf("no tile holds pixel %d,%d", x, y)
	return nil
}

func isBlack(p []byte) bool { return p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 255 }

func TestRenderInsideIsBlackOutsideIsNot(t *testing.T) {
	// In the default image: the origin is inside the set, the top-left
	// corner (-2.5+1.09i) far outside.
	x, y := pixelOf(Config{}, 0, 0)
	if p := renderPixel(t, Config{}, x, y); !isBlack(p) {
		t.Errorf("0+0i (pixel %d,%d) rendered %v, want black", x, y, p)
	}
	if p := renderPixel(t, Config{}, 0, 0); isBlack(p) || p[3] != 255 {
		t.Errorf("top-left pixel rendered %v, want an opaque colour", p)
	}

	// Single points, one pixel each; the first two are inside the set but
	// outside the shortcuts for the main cardioid and period-2 bulb, so
	// they exercise the iteration and the cycle check.
	for _, pt := range []struct {
		re, im float64
		inside bool
	}{
		{-0.12, 0.74, true}, // period-3 bulb
		{-1.76, 0, true},    // the period-3 copy of the set on the real axis
		{-1, 0, true},       // centre of the period-2 bulb
		{0.25, 0, true},     // the cusp
		{0.2501, 0, false},  // just past it: escapes after ~300 iterations
		{1, 1, false},
		{-2.1, 0, false},
		{1000, -1000, false}, // escapes at once, far past the bailout
		{0, 1e150, false},    // would overflow if squared twice
	} {
		tl := Tile{W: 1, H: 1, Width: 1, Height: 1, CenterX: pt.re, CenterY: pt.im, Scale: 1e-9, MaxIter: 5000}
		p, err := Render(context.Background(), tl.Payload())
		if err != nil || len(p) != 4 {
			t.Fatalf("render %g%+gi: %d bytes, %v", pt.re, pt.im, len(p), err)
		}
		if isBlack(p) != pt.inside {
			t.Errorf("%g%+gi rendered %v; in the set: %v", pt.re, pt.im, p, pt.inside)
		}
	}
}

func TestRenderSize(t *testing.T) {
	c := Config{Width: 333, Height: 101, TileSize: 50, MaxIter: 50}
	for _, tl := range c.Tiles() {
		pix, err := Render(context.Background(), tl.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if len(pix) != tl.W*tl.H*4 {
			t.Fatalf("tile %dx%d: %d bytes, want %d", tl.W, tl.H, len(pix), tl.W*tl.H*4)
		}
		for i := 3; i < len(pix); i += 4 {
			if pix[i] != 255 {
				t.Fatalf("tile %dx%d at %d,%d: pixel %d is not opaque", tl.W, tl.H, tl.X, tl.Y, i/4)
			}
		}
	}
}

// Tiles are seamless: the image rendered in tiles is the image rendered
// whole, byte for byte.
func TestTilesMatchTheWholeImage(t *testing.T) {
	tiled := Config{Width: 250, Height: 130, TileSize: 64, CenterX: -0.75, CenterY: 0.1, Scale: 0.01, MaxIter: 200}
	whole := tiled
	whole.TileSize = 4096
	a, b := renderAll(t, tiled), renderAll(t, whole)
	if !bytes.Equal(a.rgba.Pix, b.rgba.Pix) {
		t.Fatal("tiled and whole renders differ")
	}
}

// renderAll renders every tile of c, several at once, and paints them, last
// first.
func renderAll(t testing.TB, c Config) *Image {
	img := NewImage(c)
	tiles := c.Tiles()
	var wg sync.WaitGroup
	errs := make([]error, len(tiles))
	for i := range tiles {
		tl := tiles[len(tiles)-1-i]
		wg.Go(func() {
			pix, err := Render(context.Background(), tl.Payload())
			if err == nil {
				err = img.Paint(tl, pix)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return img
}

// countingCtx counts Err calls and reports cancellation from call n+1 on
// (never if n < 0).
type countingCtx struct {
	context.Context
	calls, n int
}

func (c *countingCtx) Err() error {
	c.calls++
	if c.n >= 0 && c.calls > c.n {
		return context.Canceled
	}
	return nil
}

func TestRenderHonoursContext(t *testing.T) {
	tl := Config{Width: 64, Height: 37, TileSize: 64, MaxIter: 20}.Tiles()[0]

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if pix, err := Render(ctx, tl.Payload()); !errors.Is(err, context.Canceled) || pix != nil {
		t.Fatalf("cancelled render: %d bytes, %v; want context.Canceled", len(pix), err)
	}

	// It checks once per row...
	all := &countingCtx{Context: context.Background(), n: -1}
	if _, err := Render(all, tl.Payload()); err != nil || all.calls != tl.H {
		t.Fatalf("render checked ctx %d times for %d rows (err %v)", all.calls, tl.H, err)
	}
	// ...and stops at the first row after ctx is done.
	some := &countingCtx{Context: context.Background(), n: 10}
	if _, err := Render(some, tl.Payload()); !errors.Is(err, context.Canceled) || some.calls != 11 {
		t.Fatalf("render cancelled after 10 rows: %d checks, %v", some.calls, err)
	}
}

func TestRenderRejectsBadPayload(t *testing.T) {
	if _, err := Render(context.Background(), []byte("{\"x\":0}")); err == nil {
		t.Fatal("rendered a JSON payload")
	}
}

func TestImageAssemblesAPNG(t *testing.T) {
	c := Config{Width: 120, Height: 70, TileSize: 32, MaxIter: 100}
	if p, total := NewImage(c).Tiles(); p != 0 || total != 12 {
		t.Fatalf("new image: %d of %d tiles painted, want 0 of 12", p, total)
	}
	img := renderAll(t, c)
	if p, total := img.Tiles(); p != total || total != len(c.Tiles()) {
		t.Fatalf("painted %d of %d tiles, want all %d", p, total, len(c.Tiles()))
	}

	// Painting a tile again overwrites it and does not count twice.
	tl := c.Tiles()[5]
	again, _ := Render(context.Background(), tl.Payload())
	if err := img.Paint(tl, again); err != nil {
		t.Fatal(err)
	}
	if p, total := img.Tiles(); p != total {
		t.Fatalf("after a repaint: %d of %d tiles", p, total)
	}

	var buf bytes.Buffer
	if err := img.WritePNG(&buf); err != nil {
		t.Fatal(err)
	}
	dec, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := dec.Bounds(); b.Dx() != 120 || b.Dy() != 70 {
		t.Fatalf("png is %v, want 120x70", b)
	}
	// The PNG holds the rendered pixels: check the repainted tile's corner.
	r, g, b, a := dec.At(tl.X, tl.Y).RGBA()
	if got := []byte{byte(r >> 8), byte(g >> 8), byte(b >> 8), byte(a >> 8)}; !bytes.Equal(got, again[:4]) {
		t.Fatalf("png pixel %d,%d is %v, rendered %v", tl.X, tl.Y, got, again[:4])
	}
}

func TestImagePaintRejects(t *testing.T) {
	c := Config{Width: 120, Height: 70, TileSize: 32, MaxIter: 100}
	img := NewImage(c)
	tl := c.Tiles()[3]
	pix := make([]byte, tl.W*tl.H*4)
	other := func(f func(*Tile)) Tile { x := tl; f(&x); return x }
	for name, p := range map[string]struct {
		t   Tile
		pix []byte
	}{
		"short pixels":      {tl, pix[1:]},
		"long pixels":       {tl, append(pix, 0)},
		"off the grid":      {other(func(x *Tile) { x.X++ }), pix},
		"outside the image": {other(func(x *Tile) { x.X = 128 }), pix},
		"negative":          {other(func(x *Tile) { x.Y = -32 }), pix},
		"unclipped":         {other(func(x *Tile) { x.W = 32 }), make([]byte, 32*32*4)},
		"another view":      {other(func(x *Tile) { x.Scale *= 2 }), pix},
		"another image":     {Config{Width: 121, Height: 70, TileSize: 32}.Tiles()[3], pix},
	} {
		if err := img.Paint(p.t, p.pix); err == nil {
			t.Errorf("%s: painted", name)
		}
	}
	if n, _ := img.Tiles(); n != 0 {
		t.Fatalf("%d tiles counted after rejected paints", n)
	}
}

// The job, driven the way appnode's Run drives it, without a master.
func TestJob(t *testing.T) {
	c := Config{Width: 90, Height: 50, TileSize: 40, MaxIter: 50}
	job := NewJob(c)
	var tasks []*appnode.Task
	for task := job.Next(); task != nil; task = job.Next() {
		if task.Kind != Kind {
			t.Fatalf("task of kind %q", task.Kind)
		}
		tasks = append(tasks, task)
	}
	if len(tasks) != job.Total() || job.Total() != 6 {
		t.Fatalf("%d tasks, Total %d, want 6", len(tasks), job.Total())
	}
	for i, task := range tasks {
		if i == 4 {
			job.Finished(task, nil, &appnode.TaskError{ID: 4, Message: "slave went away"})
			continue
		}
		pix, err := Render(context.Background(), task.Payload)
		job.Finished(task, pix, err)
	}
	if p, total := job.Image().Tiles(); p != 5 || total != 6 {
		t.Fatalf("painted %d of %d, want 5 of 6", p, total)
	}
	err := job.Err()
	if err == nil || !strings.Contains(err.Error(), "tile at 40,40") || !strings.Contains(err.Error(), "slave went away") {
		t.Fatalf("Err() = %v, want the failed tile at 40,40", err)
	}
}

func FuzzParseTile(f *testing.F) {
	f.Add(Config{}.Tiles()[0].Payload())
	f.Add(Config{Width: 7, Height: 3, TileSize: 2, CenterX: 0.3, CenterY: -0.2, Scale: 1e-5, MaxIter: 9}.Tiles()[5].Payload())
	f.Add(Tile{W: 1, H: 1, Width: 1, Height: 1, CenterX: math.NaN(), Scale: 1, MaxIter: 1}.Payload())
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		tl, err := ParseTile(p)
		if err != nil {
			return
		}
		if q := tl.Payload(); !bytes.Equal(p, q) {
			t.Fatalf("parsed %x as %+v, which encodes as %x", p, tl, q)
		}
		// What parses must render, and to the right size. Keep it cheap.
		if tl.W*tl.H > 64*64 {
			return
		}
		tl.MaxIter = min(tl.MaxIter, 50)
		pix, err := Render(context.Background(), tl.Payload())
		if err != nil || len(pix) != tl.W*tl.H*4 {
			t.Fatalf("render %+v: %d bytes, %v", tl, len(pix), err)
		}
	})
}

// BenchmarkRender renders one 100x100 tile of the default image: the one
// at 1000,100, on the set's boundary by the top bulb, among the slowest.
func BenchmarkRender(b *testing.B) {
	c := Config{}.WithDefaults()
	tl := c.tile(1000, 100)
	p := tl.Payload()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(tl.W*tl.H*b.N)/b.Elapsed().Seconds()/1e6, "Mpixel/s")
}
