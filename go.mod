module github.com/anthill-project/anthill

go 1.26.8

require (
	github.com/gorilla/rpc v1.2.0
	github.com/gorilla/websocket v1.5.3
	go.etcd.io/bbolt v1.5.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/prometheus/client_golang v1.25.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)
