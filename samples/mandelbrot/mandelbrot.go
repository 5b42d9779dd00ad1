// Package mandelbrot is the demo job: a Mandelbrot image split into tiles,
// one task per tile. Render is the slave's handler for a tile; Job is the
// application side, which makes the tasks lazily and paints each result
// into the image it writes as a PNG.
package mandelbrot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"sync"
)

// Kind is the task kind slaves register Render under.
const Kind = "mandelbrot"

// Config describes the image. Zero fields take the defaults noted.
type Config struct {
	Width, Height    int     // pixels; zero means 1600x1000
	TileSize         int     // tile edge in pixels; zero means 100
	CenterX, CenterY float64 // complex-plane centre; both zero means -0.75, 0
	Scale            float64 // complex units per pixel; zero fits [-2.5,1]x[-1,1]
	MaxIter          int     // zero means 500
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Width <= 0 {
		c.Width = 1600
	}
	if c.Height <= 0 {
		c.Height = 1000
	}
	if c.TileSize <= 0 {
		c.TileSize = 100
	}
	if c.CenterX == 0 && c.CenterY == 0 {
		c.CenterX = -0.75
	}
	if c.Scale <= 0 {
		c.Scale = math.Max(3.5/float64(c.Width), 2.0/float64(c.Height))
	}
	if c.MaxIter <= 0 {
		c.MaxIter = 500
	}
	return c
}

// Tile is one task: a rectangle of the image and what it takes to render it.
type Tile struct {
	X, Y, W, H       int // the rectangle, in image pixels
	Width, Height    int // the whole image
	CenterX, CenterY float64
	Scale            float64
	MaxIter          int
}

// Tiles splits the image row by row; edge tiles are clipped.
func (c Config) Tiles() []Tile {
	c = c.WithDefaults()
	var ts []Tile
	for y := 0; y < c.Height; y += c.TileSize {
		for x := 0; x < c.Width; x += c.TileSize {
			ts = append(ts, Tile{
				X: x, Y: y, W: min(c.TileSize, c.Width-x), H: min(c.TileSize, c.Height-y),
				Width: c.Width, Height: c.Height, CenterX: c.CenterX, CenterY: c.CenterY,
				Scale: c.Scale, MaxIter: c.MaxIter,
			})
		}
	}
	return ts
}

// payloadSize is 7 uint32 and 3 float64, little endian.
const payloadSize = 7*4 + 3*8

// Payload encodes the tile compactly for the wire.
func (t Tile) Payload() []byte {
	b := make([]byte, 0, payloadSize)
	for _, v := range []int{t.X, t.Y, t.W, t.H, t.Width, t.Height, t.MaxIter} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	for _, f := range []float64{t.CenterX, t.CenterY, t.Scale} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return b
}

// ParseTile decodes and checks a payload: slaves render only sane tiles.
func ParseTile(p []byte) (Tile, error) {
	if len(p) != payloadSize {
		return Tile{}, fmt.Errorf("mandelbrot payload is %d bytes, want %d", len(p), payloadSize)
	}
	u := func(i int) int { return int(binary.LittleEndian.Uint32(p[4*i:])) }
	f := func(i int) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(p[28+8*i:])) }
	t := Tile{X: u(0), Y: u(1), W: u(2), H: u(3), Width: u(4), Height: u(5), MaxIter: u(6),
		CenterX: f(0), CenterY: f(1), Scale: f(2)}
	switch {
	case t.W <= 0 || t.H <= 0 || t.W > 4096 || t.H > 4096:
		return Tile{}, fmt.Errorf("tile of %dx%d pixels: each side must be 1 to 4096", t.W, t.H)
	case t.Width <= 0 || t.Height <= 0 || t.Width > 1<<16 || t.Height > 1<<16 || t.X+t.W > t.Width || t.Y+t.H > t.Height:
		return Tile{}, fmt.Errorf("tile %d,%d %dx%d does not fit a %dx%d image", t.X, t.Y, t.W, t.H, t.Width, t.Height)
	case t.MaxIter < 1 || t.MaxIter > 100000:
		return Tile{}, fmt.Errorf("max iterations %d: want 1 to 100000", t.MaxIter)
	case !finite(t.CenterX) || !finite(t.CenterY) || !finite(t.Scale) || t.Scale <= 0:
		return Tile{}, errors.New("centre and scale must be finite, scale positive")
	}
	return t, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Render is the slave's handler: it returns the tile's pixels as RGBA, row
// by row, checking for cancellation once per row.
func Render(ctx context.Context, payload []byte) ([]byte, error) {
	t, err := ParseTile(payload)
	if err != nil {
		return nil, err
	}
	out := make([]byte, t.W*t.H*4)
	x0 := t.CenterX - float64(t.Width)/2*t.Scale
	y0 := t.CenterY - float64(t.Height)/2*t.Scale
	for py := 0; py < t.H; py++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("render interrupted: %w", err)
		}
		ci := y0 + float64(t.Y+py)*t.Scale
		row := out[py*t.W*4:]
		for px := 0; px < t.W; px++ {
			cr := x0 + float64(t.X+px)*t.Scale
			r, g, b := colour(escape(cr, ci, t.MaxIter), t.MaxIter)
			row[px*4], row[px*4+1], row[px*4+2], row[px*4+3] = r, g, b, 255
		}
	}
	return out, nil
}

// escape returns a smooth iteration count, or -1 inside the set.
func escape(cr, ci float64, maxIter int) float64 {
	// Skip the main cardioid and the period-2 bulb: they are inside, and
	// they are where the iterations are most expensive.
	q := (cr-0.25)*(cr-0.25) + ci*ci
	if q*(q+(cr-0.25)) <= 0.25*ci*ci || (cr+1)*(cr+1)+ci*ci <= 1.0/16 {
		return -1
	}
	var zr, zi, zr2, zi2 float64
	for i := 0; i < maxIter; i++ {
		zi = 2*zr*zi + ci
		zr = zr2 - zi2 + cr
		zr2, zi2 = zr*zr, zi*zi
		if zr2+zi2 > 1<<16 {
			return float64(i) + 1 - math.Log2(math.Log2(zr2+zi2)/2)
		}
	}
	return -1
}

// colour maps a smooth count to a cosine palette; black inside the set.
func colour(n float64, maxIter int) (r, g, b byte) {
	if n < 0 {
		return 0, 0, 0
	}
	t := math.Sqrt(n / float64(maxIter))
	c := func(phase float64) byte {
		return byte(255 * (0.5 + 0.5*math.Cos(2*math.Pi*(3*t+phase))))
	}
	return c(0.0), c(0.10), c(0.20)
}

// Image gathers rendered tiles. It is safe for concurrent Paint calls.
type Image struct {
	mu      sync.Mutex
	rgba    *image.RGBA
	painted int
	total   int
}

// NewImage makes a blank image for c.
func NewImage(c Config) *Image {
	c = c.WithDefaults()
	return &Image{rgba: image.NewRGBA(image.Rect(0, 0, c.Width, c.Height)), total: len(c.Tiles())}
}

// Paint copies a rendered tile in.
func (im *Image) Paint(t Tile, pixels []byte) error {
	if len(pixels) != t.W*t.H*4 {
		return fmt.Errorf("tile %d,%d: %d bytes of pixels, want %d", t.X, t.Y, len(pixels), t.W*t.H*4)
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if !image.Rect(t.X, t.Y, t.X+t.W, t.Y+t.H).In(im.rgba.Rect) {
		return fmt.Errorf("tile %d,%d %dx%d lies outside the image", t.X, t.Y, t.W, t.H)
	}
	for row := 0; row < t.H; row++ {
		off := im.rgba.PixOffset(t.X, t.Y+row)
		copy(im.rgba.Pix[off:off+t.W*4], pixels[row*t.W*4:])
	}
	im.painted++
	return nil
}

// Tiles reports progress.
func (im *Image) Tiles() (painted, total int) {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.painted, im.total
}

// WritePNG encodes the image.
func (im *Image) WritePNG(w io.Writer) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	return png.Encode(w, im.rgba)
}
