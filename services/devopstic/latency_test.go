package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// BenchmarkEndToEnd measures, one event at a time, the POST alone (the 202) and the POST until
// the event's row is in Postgres, on the same stack in the same run. The difference is the
// writer's share: DEVOPSTIC_WRITER_BATCH_WAIT (50ms) plus a transaction.
func BenchmarkEndToEnd(b *testing.B) {
	for _, name := range []string{"post", "post-until-row"} {
		b.Run(name, func(b *testing.B) {
			s := startStack(b, "", withEnv("DEVOPSTIC_WRITER_BATCH_WAIT", "50ms")) // the default
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("%s-%d", name, i)
				s.postJSON(http.StatusAccepted, fmt.Sprintf(`{"id":%q,"type":"commit","pipeline_id":"api","commit_id":%q,"timestamp":1795600000}`, id, id))
				if name == "post-until-row" {
					for s.count(`SELECT count(*) FROM events WHERE id = $1`, id) == 0 {
						time.Sleep(200 * time.Microsecond)
					}
				}
			}
		})
	}
}
