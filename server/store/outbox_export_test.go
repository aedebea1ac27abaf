package store

import (
	"context"
	"errors"
)

// failCommit fails every write transaction after its body ran: the
// device row and the outbox row are both written in the transaction, then
// it is rolled back, as a failed COMMIT would.
type failCommit struct{ backend }

// ErrInjectedCommit is what failCommit fails with.
var ErrInjectedCommit = errors.New("injected commit failure")

func (b failCommit) inTx(ctx context.Context, fn func(querier) error) error {
	return b.backend.inTx(ctx, func(q querier) error {
		if err := fn(q); err != nil {
			return err
		}
		var n int64
		if err := q.queryRow(ctx, `SELECT COUNT(*) FROM audit_outbox`).Scan(&n); err != nil || n != 1 {
			return errors.New("the outbox row is not in the transaction before commit")
		}
		return ErrInjectedCommit
	})
}

// FailCommits makes every write transaction of st fail after its body
// ran, or stops that.
func FailCommits(st Store, fail bool) {
	ob := st.(*sqlStore).b
	if f, ok := ob.backend.(failCommit); ok {
		ob.backend = f.backend
	}
	if fail {
		ob.backend = failCommit{ob.backend}
	}
}
