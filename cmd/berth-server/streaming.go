package main

import (
	"context"
	"fmt"
	"net"

	"github.com/berth/berth/internal/cluster/agent"
	"github.com/berth/berth/internal/cluster/agent/streaming"
	"github.com/berth/berth/internal/engine/client"
)

// serveStreaming plugs the node's logs/exec/attach/port-forward endpoint
// (package streaming) into the agent through agent.Options.Streaming, as
// docs/agent.md describes; `berth agent` and the all-in-one `berth server`
// both use it.
func serveStreaming(ctx context.Context, s agent.StreamingSetup) error {
	eng, err := client.New(s.Engine)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", s.Port))
	if err != nil {
		return fmt.Errorf("streaming endpoint: %w", err)
	}
	return streaming.New(streaming.Options{Engine: eng, CertFile: s.CertFile, KeyFile: s.KeyFile,
		CAFile: s.CAFile, Logger: s.Logger}).Serve(ctx, ln)
}
