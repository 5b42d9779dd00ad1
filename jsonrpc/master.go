package jsonrpc

import (
	"context"

	"github.com/anthill-project/anthill/internal/view"
	"github.com/anthill-project/anthill/master/sched"
	"github.com/anthill-project/anthill/protocol"
)

// Master is what the API needs of a master: the operator verbs of its
// scheduler and its numbers. A *sched.Scheduler (master.Scheduler) is one.
type Master interface {
	Submit(ctx context.Context, app string, tasks []protocol.NewTask) (uint64, error)
	Task(id uint64) (sched.TaskInfo, error)
	Tasks(f sched.TaskFilter) ([]sched.TaskInfo, uint64, error)
	Wait(ctx context.Context, ids []uint64) ([]sched.TaskInfo, error)
	Cancel(id uint64) error
	Retry(id uint64) error
	Drain(session string) error
	// Replication and trust (Apps.Configure, Volunteers.*).
	ConfigureApp(app string, c sched.AppConfig) error
	AppConfigOf(app string) sched.AppConfig
	Trust() []sched.VolunteerTrust
	VolunteerTrustOf(name string) sched.VolunteerTrust
	view.Source
}
