//go:build race

package trust

// raceEnabled: the simulator is single-threaded arithmetic, which the race
// detector only slows down twentyfold; under it the long runs are left to
// the plain test run.
const raceEnabled = true
