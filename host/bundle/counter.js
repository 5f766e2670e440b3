// The built-in demo served when no bundle is given: one class, Counter,
// reachable as the namespace COUNTER.
class Counter {
  constructor(state, env) {
    this.state = state;
  }

  // Adds `by` (1 when missing or 0) to the stored count and returns it.
  increment(by) {
    const next = (this.state.storage.get('count') || 0) + (by || 1);
    this.state.storage.put('count', next);
    return next;
  }

  // The stored count.
  value() {
    return this.state.storage.get('count') || 0;
  }

  // GET /count answers the count as text.
  fetch(request) {
    if (request.path === '/count') {
      return { status: 200, body: String(this.state.storage.get('count') || 0) };
    }
    return { status: 404, body: 'not found' };
  }
}

exports.objects = { Counter };
