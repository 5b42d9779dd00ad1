// Package e2e holds the end-to-end tests: the real anthill binary as slave
// and master processes, applications through appnode, real bbolt files in
// temp dirs. It has no code of its own besides the tests.
package e2e
