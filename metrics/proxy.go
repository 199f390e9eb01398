package metrics

import "time"

// The methods below implement proxy.Metrics (the interface guard lives in the
// tests, so that this package does not import proxy).

// ClientAccepted counts an accepted client connection and adds it to the open ones.
func (m *Metrics) ClientAccepted() {
	m.clientsAccepted.Inc()
	m.clientsOpen.Inc()
}

// ClientRejected counts a connection refused before its session started.
func (m *Metrics) ClientRejected(reason string) {
	m.clientsRejected.WithLabelValues(m.rejectReasons.value(reason)).Inc()
}

// ClientClosed removes an accepted connection from the open ones.
func (m *Metrics) ClientClosed() { m.clientsOpen.Dec() }

// BackendDialed counts a dial to region's backend and updates pgtenant_region_up.
func (m *Metrics) BackendDialed(region string, err error) {
	r := m.regions.value(region)
	if err != nil {
		m.backendDialErrors.WithLabelValues(r).Inc()
		m.regionUp.WithLabelValues(r).Set(0)
		return
	}
	m.backendDials.WithLabelValues(r).Inc()
	m.regionUp.WithLabelValues(r).Set(1)
}

// StatementDecided counts a policy decision. verdict is allow or deny; reason
// is the deny reason code (ignored for allow).
func (m *Metrics) StatementDecided(verdict, reason string) {
	switch verdict {
	case "allow":
		m.allowed.Inc()
	case "deny":
		m.statements.WithLabelValues("deny", m.denyReasons.value(reason)).Inc()
	default:
		m.statements.WithLabelValues(otherLabel, "").Inc()
	}
}

// StatementDone records a forwarded statement's proxy overhead and end-to-end latency.
func (m *Metrics) StatementDone(region string, overhead, total time.Duration) {
	if c, ok := m.perRegion[region]; ok {
		c.overhead.Observe(overhead.Seconds())
		c.duration.Observe(total.Seconds())
		return
	}
	r := m.regions.value(region)
	m.statementOverhead.WithLabelValues(r).Observe(overhead.Seconds())
	m.statementDuration.WithLabelValues(r).Observe(total.Seconds())
}
