// Package mandelbrot is the demo job: a Mandelbrot image split into tiles
// that slaves render, one task per tile, and that the application gathers
// into a PNG. Render is the slave's handler; Job is the application side.
// The package does no networking: Job plugs into appnode, Render into a
// slave's handler registry.
package mandelbrot

import (
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"slices"
	"sync"
)

// Kind is the task kind slaves register Render under.
const Kind = "mandelbrot"

// Limits a tile must respect; ParseTile enforces them so that a slave never
// renders an absurd payload.
const (
	maxTileSide  = 4096    // pixels per tile side
	maxImageSide = 1 << 16 // pixels per image side
	maxMaxIter   = 100000
)

// Config describes the image. Zero (or negative) fields take the defaults
// noted; WithDefaults fills them in and every method applies it first.
type Config struct {
	// Width and Height are the image size in pixels. Zero means 1600x1000;
	// at most 65536 each.
	Width, Height int
	// TileSize is a tile's edge in pixels: one task per tile. Zero means
	// 100; at most 4096. Tiles on the right and bottom edges are clipped.
	TileSize int
	// CenterX and CenterY are the point of the complex plane at the centre
	// of the image. Both zero means -0.75+0i, so the origin itself cannot
	// be the centre; use a tiny offset instead.
	CenterX, CenterY float64
	// Scale is the size of a pixel in complex-plane units. Zero means the
	// largest that fits [-2.5,1]x[-1,1] into the image.
	Scale float64
	// MaxIter bounds the iterations per pixel: more shows finer detail
	// near the set and costs more. Zero means 500; at most 100000.
	MaxIter int
}

// WithDefaults returns c with its zero fields filled in.
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

// Validate reports whether c (with defaults) makes tiles that ParseTile
// accepts. A job built from an invalid Config fails every task.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.Width > maxImageSide || c.Height > maxImageSide {
		return fmt.Errorf("image of %dx%d pixels: each side must be at most %d", c.Width, c.Height, maxImageSide)
	}
	// The first tile is the largest; the others share its view.
	return c.tile(0, 0).validate()
}

// Tile is one task: a rectangle of the image and everything a slave needs
// to render it.
type Tile struct {
	X, Y, W, H       int     // the rectangle, in image pixels
	Width, Height    int     // the whole image, in pixels
	CenterX, CenterY float64 // the complex number at the image centre
	Scale            float64 // complex-plane units per pixel
	MaxIter          int     // iteration bound per pixel
}

// tile returns the tile whose top-left corner is x, y; c has its defaults.
func (c Config) tile(x, y int) Tile {
	return Tile{
		X: x, Y: y, W: min(c.TileSize, c.Width-x), H: min(c.TileSize, c.Height-y),
		Width: c.Width, Height: c.Height,
		CenterX: c.CenterX, CenterY: c.CenterY, Scale: c.Scale, MaxIter: c.MaxIter,
	}
}

// Tiles splits the image into tiles in row-major order: left to right,
// then top to bottom. Together they cover every pixel exactly once.
func (c Config) Tiles() []Tile {
	c = c.WithDefaults()
	cols, rows := ceilDiv(c.Width, c.TileSize), ceilDiv(c.Height, c.TileSize)
	ts := make([]Tile, 0, cols*rows)
	for y := 0; y < c.Height; y += c.TileSize {
		for x := 0; x < c.Width; x += c.TileSize {
			ts = append(ts, c.tile(x, y))
		}
	}
	return ts
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// The payload is a version byte, then seven little-endian uint32 (X, Y, W,
// H, Width, Height, MaxIter) and three little-endian float64 (CenterX,
// CenterY, Scale): 53 bytes.
const (
	payloadVersion = 1
	payloadSize    = 1 + 7*4 + 3*8
)

// Payload encodes the tile for the wire; ParseTile decodes it.
func (t Tile) Payload() []byte {
	b := make([]byte, 1, payloadSize)
	b[0] = payloadVersion
	for _, v := range [...]int{t.X, t.Y, t.W, t.H, t.Width, t.Height, t.MaxIter} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	for _, f := range [...]float64{t.CenterX, t.CenterY, t.Scale} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return b
}

// ParseTile decodes a payload made by Tile.Payload and checks that it is
// sane: each tile side is 1 to 4096 pixels, each image side 1 to 65536,
// the tile lies within the image, MaxIter is 1 to 100000, and the centre,
// scale and the image's corners in the complex plane are finite (the scale
// positive).
func ParseTile(payload []byte) (Tile, error) {
	if len(payload) != payloadSize {
		return Tile{}, fmt.Errorf("mandelbrot payload of %d bytes, want %d", len(payload), payloadSize)
	}
	if payload[0] != payloadVersion {
		return Tile{}, fmt.Errorf("mandelbrot payload version %d, want %d", payload[0], payloadVersion)
	}
	var u [7]int
	for i := range u {
		v := binary.LittleEndian.Uint32(payload[1+4*i:])
		if v > max(maxImageSide, maxMaxIter) { // beyond every limit; keeps int arithmetic safe
			return Tile{}, fmt.Errorf("mandelbrot payload field %d is %d, out of range", i, v)
		}
		u[i] = int(v)
	}
	var f [3]float64
	for i := range f {
		f[i] = math.Float64frombits(binary.LittleEndian.Uint64(payload[29+8*i:]))
	}
	t := Tile{X: u[0], Y: u[1], W: u[2], H: u[3], Width: u[4], Height: u[5], MaxIter: u[6],
		CenterX: f[0], CenterY: f[1], Scale: f[2]}
	if err := t.validate(); err != nil {
		return Tile{}, err
	}
	return t, nil
}

// validate checks the limits ParseTile documents.
func (t Tile) validate() error {
	switch {
	case t.W < 1 || t.H < 1 || t.W > maxTileSide || t.H > maxTileSide:
		return fmt.Errorf("tile of %dx%d pixels: each side must be 1 to %d", t.W, t.H, maxTileSide)
	case t.Width < 1 || t.Height < 1 || t.Width > maxImageSide || t.Height > maxImageSide:
		return fmt.Errorf("image of %dx%d pixels: each side must be 1 to %d", t.Width, t.Height, maxImageSide)
	case t.X < 0 || t.Y < 0 || t.X+t.W > t.Width || t.Y+t.H > t.Height:
		return fmt.Errorf("tile %dx%d at %d,%d does not fit a %dx%d image", t.W, t.H, t.X, t.Y, t.Width, t.Height)
	case t.MaxIter < 1 || t.MaxIter > maxMaxIter:
		return fmt.Errorf("max iterations %d: want 1 to %d", t.MaxIter, maxMaxIter)
	case !finite(t.CenterX) || !finite(t.CenterY) || !finite(t.Scale) || t.Scale <= 0:
		return fmt.Errorf("centre %g%+gi and scale %g: want finite numbers and a positive scale", t.CenterX, t.CenterY, t.Scale)
	}
	x0, y0 := t.origin()
	if !finite(x0) || !finite(y0) || !finite(x0+float64(t.Width)*t.Scale) || !finite(y0-float64(t.Height)*t.Scale) {
		return fmt.Errorf("centre %g%+gi and scale %g put the image beyond floating point", t.CenterX, t.CenterY, t.Scale)
	}
	return nil
}

// origin is the complex number at the centre of the image's top-left
// pixel. Real parts grow to the right, imaginary parts upwards.
func (t Tile) origin() (x0, y0 float64) {
	return t.CenterX - (float64(t.Width)/2-0.5)*t.Scale, t.CenterY + (float64(t.Height)/2-0.5)*t.Scale
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Render is the slave's handler: it renders the tile in payload with the
// escape-time algorithm, smoothly coloured, and returns its pixels as
// W*H*4 bytes of RGBA, row by row. Points in the set are black. It checks
// ctx before each row and returns its error, wrapped, once ctx is done.
func Render(ctx context.Context, payload []byte) ([]byte, error) {
	t, err := ParseTile(payload)
	if err != nil {
		return nil, err
	}
	out := make([]byte, t.W*t.H*4)
	x0, y0 := t.origin()
	// An orbit that comes back within eps of an earlier point has fallen
	// into a cycle: the point is in the set. A millionth of a pixel keeps
	// the check from ever changing a pixel's colour in practice (none of
	// the default image's, even at 20000 iterations) while it ends most
	// interior orbits in tens of iterations instead of MaxIter.
	eps := t.Scale * 1e-6
	for py := range t.H {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("render tile at %d,%d: %w", t.X, t.Y, err)
		}
		ci := y0 - float64(t.Y+py)*t.Scale
		row := out[py*t.W*4 : (py+1)*t.W*4]
		for px := range t.W {
			cr := x0 + float64(t.X+px)*t.Scale
			c := colour(escape(cr, ci, t.MaxIter, eps))
			row[4*px], row[4*px+1], row[4*px+2], row[4*px+3] = c[0], c[1], c[2], 255
		}
	}
	return out, nil
}

// bailout is the squared radius past which an orbit escapes. Far larger
// than the minimal 4, it makes the smooth count accurate.
const bailout = 1 << 16

// escape returns the smooth (fractional) iteration count at which the orbit
// of cr+ci·i escapes, at least 0, or -1 if it stays bounded for maxIter
// iterations or falls into a cycle.
func escape(cr, ci float64, maxIter int, eps float64) float64 {
	// The main cardioid and the period-2 bulb are most of the set's area
	// and the costliest to iterate: test for them directly.
	xq := cr - 0.25
	q := xq*xq + ci*ci
	if q*(q+xq) <= 0.25*ci*ci || (cr+1)*(cr+1)+ci*ci <= 1.0/16 {
		return -1
	}
	var zr, zi, zr2, zi2 float64
	var pr, pi float64 // reference point for cycle detection
	next := 8          // iteration at which the reference moves; doubles each time (Brent)
	for i := range maxIter {
		zi = 2*zr*zi + ci
		zr = zr2 - zi2 + cr
		zr2, zi2 = zr*zr, zi*zi
		if zr2+zi2 > bailout {
			// i+1 iterations ran; subtract how far past the bailout the
			// orbit jumped, in units of iterations: log2(log2|z|) grows by
			// one per iteration out there.
			n := float64(i+1) - math.Log2(math.Log2(zr2+zi2)/2) + math.Log2(math.Log2(bailout)/2)
			return max(n, 0)
		}
		if math.Abs(zr-pr) < eps && math.Abs(zi-pi) < eps {
			return -1
		}
		if i == next {
			pr, pi, next = zr, zi, 2*next
		}
	}
	return -1
}

// The palette is a cosine gradient, a + b·cos(2π(c·t + d)) per channel
// (after Inigo Quilez): deep blue and white at the set's edge through
// dark brown to gold far out. It is tabulated once; paletteSize steps per
// cycle are finer than 8-bit colour can show.
const paletteSize = 2048

var palette = func() (p [paletteSize][3]byte) {
	phase := [3]float64{0, 0.10, 0.20}
	for i := range p {
		t := float64(i) / paletteSize
		for ch, d := range phase {
			p[i][ch] = byte(255 * (0.5 + 0.5*math.Cos(2*math.Pi*(t+d))))
		}
	}
	return p
}()

// cycleRate is palette cycles per sqrt(iteration). The square root spreads
// the colours evenly from far out, where counts are small, to the
// boundary, where they run into the thousands; the colours do not depend
// on MaxIter.
const cycleRate = 0.134

// paletteOffset shifts the palette so that the far field is gold.
const paletteOffset = 0.85

var black = [3]byte{}

// colour maps a smooth escape count from escape to a colour.
func colour(n float64) [3]byte {
	if n < 0 {
		return black
	}
	t := math.Sqrt(n)*cycleRate + paletteOffset
	return palette[int((t-math.Floor(t))*paletteSize)%paletteSize]
}

// Image gathers rendered tiles into the picture. It is safe for concurrent
// use.
type Image struct {
	cfg  Config // with defaults
	cols int    // tiles across

	mu      sync.Mutex
	rgba    *image.RGBA
	done    []bool // by tile index, row-major
	painted int
}

// NewImage returns a blank (transparent) image for c, none of its tiles
// painted.
func NewImage(c Config) *Image {
	c = c.WithDefaults()
	cols, rows := ceilDiv(c.Width, c.TileSize), ceilDiv(c.Height, c.TileSize)
	return &Image{
		cfg: c, cols: cols,
		rgba: image.NewRGBA(image.Rect(0, 0, c.Width, c.Height)),
		done: make([]bool, cols*rows),
	}
}

// Paint copies a tile rendered by Render into the image. The tile must be
// one of the image's Config.Tiles and pixels exactly its W*H*4 bytes.
// Painting a tile again overwrites it and counts once.
func (im *Image) Paint(t Tile, pixels []byte) error {
	ts := im.cfg.TileSize
	if t.X < 0 || t.Y < 0 || t.X >= im.cfg.Width || t.Y >= im.cfg.Height ||
		t.X%ts != 0 || t.Y%ts != 0 || t != im.cfg.tile(t.X, t.Y) {
		return fmt.Errorf("tile %dx%d at %d,%d is not one of this image's tiles", t.W, t.H, t.X, t.Y)
	}
	i := t.Y/ts*im.cols + t.X/ts
	if len(pixels) != t.W*t.H*4 {
		return fmt.Errorf("tile %dx%d at %d,%d: %d bytes of pixels, want %d", t.W, t.H, t.X, t.Y, len(pixels), t.W*t.H*4)
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	for row := range t.H {
		off := im.rgba.PixOffset(t.X, t.Y+row)
		copy(im.rgba.Pix[off:off+t.W*4], pixels[row*t.W*4:])
	}
	if !im.done[i] {
		im.done[i] = true
		im.painted++
	}
	return nil
}

// Tiles reports progress: how many distinct tiles are painted, of how many.
func (im *Image) Tiles() (painted, total int) {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.painted, len(im.done)
}

// WritePNG encodes the image as painted so far; unpainted tiles are
// transparent. It copies the pixels first, so Paint need not wait for w.
func (im *Image) WritePNG(w io.Writer) error {
	im.mu.Lock()
	snap := &image.RGBA{Pix: slices.Clone(im.rgba.Pix), Stride: im.rgba.Stride, Rect: im.rgba.Rect}
	im.mu.Unlock()
	if err := png.Encode(w, snap); err != nil {
		return fmt.Errorf("write png: %w", err)
	}
	return nil
}
