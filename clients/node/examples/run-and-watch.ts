// run-and-watch runs a container on a berth engine and prints the engine's
// events about it until the container dies.
//
//   node dist/examples/run-and-watch.js [--socket PATH] IMAGE [CMD...]
//
// The socket defaults to $BERTH_RUN_ROOT/gateway.sock (/run/berth/gateway.sock).
import { credentials } from "@grpc/grpc-js";
import * as path from "node:path";
import { EngineClient, Event, EventsRequest, RunRequest, RunResponse } from "../gen/berth/engine/v1/engine";

async function main(argv: string[]): Promise<number> {
  let socket = path.join(process.env.BERTH_RUN_ROOT || "/run/berth", "gateway.sock");
  if (argv[0] === "--socket") {
    socket = argv[1];
    argv = argv.slice(2);
  }
  if (argv.length < 1) {
    console.error("usage: run-and-watch [--socket PATH] IMAGE [CMD...]");
    return 2;
  }
  const [image, ...cmd] = argv;
  const engine = new EngineClient(`unix://${socket}`, credentials.createInsecure());
  const deadline = new Date(Date.now() + 60_000);

  // Events from just before the run on, so none of this container's are missed.
  const events = engine.events(
    EventsRequest.fromPartial({ since: new Date(Date.now() - 1000), filters: { type: { values: ["container"] } } }),
    { deadline },
  );
  const runs = engine.run(RunRequest.fromPartial({ config: { image, cmd, autoRemove: true } }), { deadline });
  const id = await new Promise<string>((resolve, reject) => {
    runs.once("data", (first: RunResponse) => resolve(first.id ?? ""));
    runs.once("error", reject);
  });
  console.log(`container ${id}`);

  const exitCode = await new Promise<string>((resolve, reject) => {
    events.on("data", (ev: Event) => {
      if (ev.actorId !== id) return;
      console.log(`event ${ev.action} ${ev.actorId}`);
      if (ev.action === "die") resolve(ev.attributes.exitCode);
    });
    events.on("error", reject);
  });
  console.log(`exit code ${exitCode}`);
  events.cancel();
  runs.cancel();
  engine.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`run-and-watch: ${err.message ?? err}`);
    process.exit(1);
  },
);
