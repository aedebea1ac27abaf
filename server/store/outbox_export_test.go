package store

import (
	"context"
	"errors"
	"sync"
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

// DeadlockBoth runs two transactions on st (PostgreSQL) that take two row
// locks in opposite orders, each waiting until the other holds its first
// lock, so PostgreSQL aborts one of them as a deadlock. It returns each
// transaction's error and how many times the bodies ran in all.
func DeadlockBoth(ctx context.Context, st Store) (errA, errB error, runs int, err error) {
	b := st.(*sqlStore).b.backend
	if _, err := b.writer().exec(ctx, `CREATE TABLE deadlock_test (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		return nil, nil, 0, err
	}
	if _, err := b.writer().exec(ctx, `INSERT INTO deadlock_test VALUES (1, 0), (2, 0)`); err != nil {
		return nil, nil, 0, err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	heldA, heldB := make(chan struct{}), make(chan struct{})
	var onceA, onceB sync.Once
	body := func(first, second int, mine chan struct{}, once *sync.Once, theirs chan struct{}) func(querier) error {
		return func(q querier) error {
			mu.Lock()
			runs++
			mu.Unlock()
			if _, err := q.exec(ctx, `UPDATE deadlock_test SET v = v + 1 WHERE id = $1`, first); err != nil {
				return err
			}
			waited := false
			once.Do(func() { close(mine); waited = true })
			if waited {
				<-theirs // only on the first run: a retry goes straight on
			}
			_, err := q.exec(ctx, `UPDATE deadlock_test SET v = v + 1 WHERE id = $1`, second)
			return err
		}
	}
	wg.Go(func() { errA = b.inTx(ctx, body(1, 2, heldA, &onceA, heldB)) })
	wg.Go(func() { errB = b.inTx(ctx, body(2, 1, heldB, &onceB, heldA)) })
	wg.Wait()
	return errA, errB, runs, nil
}
