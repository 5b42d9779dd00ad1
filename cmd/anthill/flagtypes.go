package main

import (
	"fmt"
	"strconv"
	"strings"
)

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// sizeFlag is a byte count written as 268435456, 256MiB, 1GiB or 64KiB.
type sizeFlag uint64

var sizeUnits = []struct {
	suffix string
	mult   uint64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}}

func (s *sizeFlag) String() string {
	v := uint64(*s)
	for _, u := range sizeUnits[:4] {
		if v >= u.mult && v%u.mult == 0 && v/u.mult < 1024 {
			return strconv.FormatUint(v/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatUint(v, 10)
}

func (s *sizeFlag) Set(v string) error {
	num, mult := strings.TrimSpace(v), uint64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > ^uint64(0)/mult {
		return fmt.Errorf("%q is not a size (write bytes, or a number with KiB, MiB or GiB)", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}
