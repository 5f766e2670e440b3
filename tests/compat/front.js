// workerd's side of the compatibility suite: a Worker that serves the
// go-go-objects gateway's routes in front of the classes in objects.js, so
// that both runtimes get the same requests.
//
//   POST /rpc/NS/name/method  -> await env.NS.getByName(name).method(...args)
//   ANY  /fetch/NS/name/rest  -> env.NS.getByName(name).fetch(<the client's
//                                 URL after /fetch/NS/name>)
export { Compat, Other } from "./objects.js";

function envelope(body, status) {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [, kind, namespace, name, ...rest] = url.pathname.split("/");
    const binding = env[namespace];
    if (!binding) {
      return envelope({ ok: false, error: { code: "unknown_namespace", message: namespace } }, 404);
    }
    const stub = binding.getByName(decodeURIComponent(name));
    if (kind === "rpc") {
      const text = await request.text();
      const args = text ? JSON.parse(text) : [];
      try {
        const result = await stub[rest[0]](...args);
        return envelope({ ok: true, result: result === undefined ? null : result }, 200);
      } catch (e) {
        return envelope({ ok: false, error: { code: "execution_error", message: String(e) } }, 500);
      }
    }
    const target = `http://${url.host}/${rest.join("/")}${url.search}`;
    return stub.fetch(new Request(target, request));
  },
};
