package web

import (
	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/master/sched"
)

// Master is what the dashboard needs of a master: the operator verbs of its
// scheduler and its numbers. A *sched.Scheduler (master.Scheduler) is one.
type Master interface {
	Task(id uint64) (sched.TaskInfo, error)
	Tasks(f sched.TaskFilter) ([]sched.TaskInfo, uint64, error)
	Cancel(id uint64) error
	Retry(id uint64) error
	Drain(session string) error
	// Trust is every volunteer's record (the Volunteers page);
	// Leaderboard those who agreed to be listed (the public page).
	Trust() []sched.VolunteerTrust
	Leaderboard() []sched.VolunteerTrust
	view.Source
	// Stopped is closed when the master begins to shut down.
	Stopped() <-chan struct{}
}
