package hello

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/anthill-project/anthill/internal/testmaster"
	"github.com/anthill-project/anthill/master"
	"github.com/anthill-project/anthill/sandbox"
	"github.com/anthill-project/anthill/slave"
)

// The seed's hello world, end to end: a real master and a real slave (in
// this process), the app pushes one task and hears "Hello World" back.
func TestSimpleApp(t *testing.T) {
	m := testmaster.Start(t, master.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := sandbox.NewRegistry()
	reg.Register(Kind, Handler)
	s, err := slave.New(slave.Options{Master: m.URL(), Token: testmaster.AdminToken, Registry: reg, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopSlave := context.WithCancel(ctx)
	sdone := make(chan error, 1)
	go func() { sdone <- s.Run(sctx) }()

	var out bytes.Buffer
	if err := SimpleApp(ctx, m.URL(), testmaster.AdminToken, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "finished: Hello World") {
		t.Fatalf("output:\n%s", out.String())
	}
	stopSlave()
	if err := <-sdone; err != nil {
		t.Errorf("slave: %v", err)
	}
}
