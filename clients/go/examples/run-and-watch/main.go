// run-and-watch runs a container on a berth engine and prints the engine's
// events about it until the container dies.
//
//	run-and-watch [-socket PATH] IMAGE [CMD...]
//
// The socket defaults to $BERTH_RUN_ROOT/gateway.sock (/run/berth/gateway.sock).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	enginev1 "berth/clients/go/berth/engine/v1"
)

func main() {
	runRoot := os.Getenv("BERTH_RUN_ROOT")
	if runRoot == "" {
		runRoot = "/run/berth"
	}
	socket := flag.String("socket", filepath.Join(runRoot, "gateway.sock"), "the gateway's unix socket")
	flag.Parse()
	if flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: run-and-watch [-socket PATH] IMAGE [CMD...]")
		os.Exit(2)
	}
	code, err := run(*socket, flag.Arg(0), flag.Args()[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "run-and-watch:", err)
		os.Exit(1)
	}
	fmt.Printf("exit code %s\n", code)
}

// run starts IMAGE with CMD and returns the exit code its die event reports.
func run(socket, image string, cmd []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := grpc.DialContext(ctx, "unix://"+socket, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", socket, err)
	}
	defer conn.Close()
	engine := enginev1.NewEngineClient(conn)

	// Events from just before the run on, so none of this container's are missed.
	events, err := engine.Events(ctx, &enginev1.EventsRequest{
		Since:   timestamppb.New(time.Now().Add(-time.Second)),
		Filters: map[string]*enginev1.StringList{"type": {Values: []string{"container"}}},
	})
	if err != nil {
		return "", err
	}
	runs, err := engine.Run(ctx, &enginev1.RunRequest{
		Config: &enginev1.ContainerConfig{Image: image, Cmd: cmd, AutoRemove: true},
	})
	if err != nil {
		return "", err
	}
	first, err := runs.Recv()
	if err != nil {
		return "", err
	}
	id := first.GetId()
	fmt.Printf("container %s\n", id)

	for {
		ev, err := events.Recv()
		if err != nil {
			return "", err
		}
		if ev.ActorId != id {
			continue
		}
		fmt.Printf("event %s %s\n", ev.Action, ev.ActorId)
		if ev.Action == "die" {
			return ev.Attributes["exitCode"], nil
		}
	}
}
