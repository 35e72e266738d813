// Preloaded into the Portkey gateway (`node --require`): a second fence
// beside the harness's network namespace. The gateway's server listens on
// 127.0.0.1 unless told otherwise (its own default is every interface), and
// every outgoing TCP connection to anything but loopback fails at once, before
// a DNS lookup, as if refused. Nothing else about the gateway changes.
"use strict";
const net = require("node:net");

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost)$/i;

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const [first] = args;
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    if (first.path === undefined && !first.host) args[0] = { ...first, host: "127.0.0.1" };
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};

const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  // net.connect hands over [options, callback] as one normalised array.
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  const options = first !== null && typeof first === "object" ? first : { port: first, host: args[1] };
  const host = typeof options.host === "string" ? options.host.replace(/^\[|\]$/g, "") : "localhost";
  if (options.path === undefined && !LOOPBACK.test(host)) {
    const error = Object.assign(new Error(`loopback-only: refused a connection to ${host}`), {
      code: "ECONNREFUSED",
    });
    process.nextTick(() => this.destroy(error));
    return this;
  }
  return connect.apply(this, args);
};
