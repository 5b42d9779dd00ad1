package appnode_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/anthill-project/anthill/appnode"
)

// The seed's SimpleConcurrentApp: push one task, and print its result when
// the master reports it finished. It needs a master (anthill master) and a
// slave that runs the "hello" kind, so it has no checked output.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	task := &appnode.Task{Kind: "hello"}
	done := make(chan struct{})
	node, err := appnode.Connect(ctx, appnode.Options{
		Master: "ws://127.0.0.1:7070",
		App:    "hello",
		Token:  os.Getenv("ANTHILL_APP_TOKEN"), // anthill apps enroll hello
		// task_finished: called once per finished task, asynchronously.
		TaskFinished: func(t *appnode.Task, result []byte, err error) {
			if t != task {
				return // left over from an earlier run under the same app id
			}
			if err != nil {
				fmt.Println("task failed:", err)
			} else {
				fmt.Printf("%s\n", result)
			}
			close(done)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Shutdown(context.WithoutCancel(ctx))

	// push_task: returns once the master stored the task durably.
	if err := node.PushTask(ctx, task); err != nil {
		log.Fatal("push failed: ", err) // the seed's push_task_failed
	}
	fmt.Println("task", task.ID, "sent to the master") // push_task_response

	select {
	case <-done:
	case <-ctx.Done():
		log.Fatal(ctx.Err())
	}
}

// squares is a TaskSystem: a job of a million tasks, made lazily.
type squares struct {
	next, total int
	failed      int
}

func (s *squares) Next() *appnode.Task {
	if s.next == s.total {
		return nil
	}
	s.next++
	return &appnode.Task{Kind: "square", Payload: fmt.Appendf(nil, "%d", s.next), Value: s.next}
}

func (s *squares) Finished(t *appnode.Task, result []byte, err error) {
	if err != nil {
		s.failed++
		return
	}
	_ = result // gather the result for t.Value.(int)
}

// Run drives a whole job with backpressure: at most Window tasks are in
// memory and in flight at any time, however many the job makes.
func ExampleNode_Run() {
	ctx := context.Background()
	node, err := appnode.Connect(ctx, appnode.Options{Master: "ws://127.0.0.1:7070", App: "squares", Token: os.Getenv("ANTHILL_APP_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Shutdown(ctx)

	job := &squares{total: 1_000_000}
	if err := node.Run(ctx, job, appnode.RunOptions{Window: 10_000}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.total, "tasks,", job.failed, "failed")
}
