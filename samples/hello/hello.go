// Package hello is the seed's first example in Go: SimpleTask, a task that
// computes "Hello World" on whichever slave runs it, and SimpleApp, an
// application that pushes one and prints the result when the master tells
// it the task is finished.
package hello

import (
	"context"
	"fmt"
	"io"

	"github.com/anthill-project/anthill/appnode"
)

// Kind is the task kind the stock slave registers for Handler.
const Kind = "hello"

// Handler is SimpleTask's body: it runs on an arbitrary slave.
func Handler(ctx context.Context, payload []byte) ([]byte, error) {
	if len(payload) > 0 {
		return []byte("Hello " + string(payload)), nil
	}
	return []byte("Hello World"), nil
}

// SimpleApp connects to the master at url under the app id "hello", with
// token (the app's own, from anthill apps enroll hello, or the admin
// token), pushes
// one task and waits for its notification, writing what happens to out.
// It mirrors the seed's SimpleConcurrentApp: push_task, then task_finished
// arrives asynchronously.
func SimpleApp(ctx context.Context, url, token string, out io.Writer) error {
	task := &appnode.Task{Kind: Kind}
	type outcome struct {
		result []byte
		err    error
	}
	finished := make(chan outcome, 1)
	node, err := appnode.Connect(ctx, appnode.Options{
		Master: url,
		App:    "hello",
		Token:  token,
		TaskFinished: func(t *appnode.Task, result []byte, err error) {
			if t != task {
				return // left over from an earlier run under the same app id
			}
			// Reported by SimpleApp's goroutine: this one may run before
			// PushTask has returned there, and out is not safe for both.
			finished <- outcome{result, err}
		},
	})
	if err != nil {
		return err
	}
	defer node.Shutdown(context.WithoutCancel(ctx))

	if err := node.PushTask(ctx, task); err != nil {
		// The seed's push_task_failed.
		return fmt.Errorf("push task: %w", err)
	}
	// The seed's push_task_response: the master has the task durably.
	fmt.Fprintf(out, "task %d sent to the master\n", task.ID)
	select {
	case o := <-finished:
		if o.err == nil {
			fmt.Fprintf(out, "task %d finished: %s\n", task.ID, o.result)
		}
		return o.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
