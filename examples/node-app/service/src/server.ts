// A small HTTP service. With --once it prints one response and exits (for a quick check of the image).
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

export interface Health {
  status: "ok";
  service: string;
  node: string;
}

export function health(): Health {
  return { status: "ok", service: "node-app", node: process.versions.node };
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(health()));
    return;
  }
  res.writeHead(404).end();
}

if (process.argv.includes("--once")) {
  console.log(JSON.stringify(health()));
} else {
  const port = Number(process.env.PORT ?? 8080);
  createServer(handle).listen(port, () => console.log(`listening on ${port}`));
}
