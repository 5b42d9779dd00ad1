package mandelbrot

import (
	"bytes"
	"context"
	"image/png"
	"math"
	"testing"
)

func TestTilesCoverTheImageOnce(t *testing.T) {
	for _, c := range []Config{{}, {Width: 333, Height: 101, TileSize: 50}, {Width: 7, Height: 3, TileSize: 100}} {
		c = c.WithDefaults()
		seen := make([]int, c.Width*c.Height)
		for _, tl := range c.Tiles() {
			for y := tl.Y; y < tl.Y+tl.H; y++ {
				for x := tl.X; x < tl.X+tl.W; x++ {
					seen[y*c.Width+x]++
				}
			}
		}
		for i, n := range seen {
			if n != 1 {
				t.Fatalf("%dx%d/%d: pixel %d covered %d times", c.Width, c.Height, c.TileSize, i, n)
			}
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, tl := range (Config{Width: 250, Height: 130, TileSize: 64}).Tiles() {
		got, err := ParseTile(tl.Payload())
		if err != nil || got != tl {
			t.Fatalf("round trip of %+v: %+v %v", tl, got, err)
		}
	}
}

func TestParseTileRejects(t *testing.T) {
	good := (Config{}).Tiles()[0]
	bad := func(f func(*Tile)) []byte { x := good; f(&x); return x.Payload() }
	for name, p := range map[string][]byte{
		"truncated":   good.Payload()[:10],
		"huge tile":   bad(func(x *Tile) { x.W = 5000 }),
		"off image":   bad(func(x *Tile) { x.X = x.Width }),
		"nan centre":  bad(func(x *Tile) { x.CenterX = math.NaN() }),
		"zero scale":  bad(func(x *Tile) { x.Scale = 0 }),
		"no iterates": bad(func(x *Tile) { x.MaxIter = 0 }),
	} {
		if _, err := ParseTile(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRenderInsideIsBlackOutsideIsNot(t *testing.T) {
	// One-pixel tiles centred on 0+0i (inside the set) and 1+1i (outside).
	px := func(cx, cy float64) []byte {
		tl := Tile{W: 1, H: 1, Width: 1, Height: 1, CenterX: cx, CenterY: cy, Scale: 1e-9, MaxIter: 200}
		out, err := Render(context.Background(), tl.Payload())
		if err != nil || len(out) != 4 {
			t.Fatalf("render: %d bytes, %v", len(out), err)
		}
		return out
	}
	if p := px(0, 0); p[0]+p[1]+p[2] != 0 {
		t.Errorf("0+0i rendered %v, want black", p)
	}
	if p := px(1, 1); int(p[0])+int(p[1])+int(p[2]) == 0 {
		t.Errorf("1+1i rendered black")
	}
}

func TestRenderHonoursCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Render(ctx, (Config{}).Tiles()[0].Payload()); err == nil {
		t.Fatal("cancelled render succeeded")
	}
}

func TestJobAssemblesAPNG(t *testing.T) {
	c := Config{Width: 120, Height: 70, TileSize: 32, MaxIter: 50}
	img := NewImage(c)
	for _, tl := range c.Tiles() {
		pix, err := Render(context.Background(), tl.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if err := img.Paint(tl, pix); err != nil {
			t.Fatal(err)
		}
	}
	if err := img.Paint(c.Tiles()[0], []byte{1}); err == nil {
		t.Fatal("a tile of the wrong size was painted")
	}
	var buf bytes.Buffer
	if err := img.WritePNG(&buf); err != nil {
		t.Fatal(err)
	}
	dec, err := png.Decode(&buf)
	if err != nil || dec.Bounds().Dx() != 120 || dec.Bounds().Dy() != 70 {
		t.Fatalf("png: %v %v", dec.Bounds(), err)
	}
	if p, total := img.Tiles(); p != total || total != len(c.Tiles()) {
		t.Fatalf("painted %d of %d", p, total)
	}
}

func FuzzParseTile(f *testing.F) {
	f.Add((Config{}).Tiles()[0].Payload())
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		tl, err := ParseTile(p)
		if err != nil {
			return
		}
		// Whatever parses must render without panicking (cheaply).
		tl.MaxIter = 1
		if tl.W*tl.H <= 4096 {
			if _, err := Render(context.Background(), tl.Payload()); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func BenchmarkRenderTile(b *testing.B) {
	p := (Config{MaxIter: 2000}).Tiles()[60].Payload()
	for b.Loop() {
		if _, err := Render(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
}
