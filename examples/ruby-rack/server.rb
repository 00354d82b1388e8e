# A small HTTP/1.1 server for a Rack-style app, from Ruby's standard library alone (rubygems.org
# may be unreachable from the builder, and WEBrick is a gem since Ruby 3). It reads config.ru,
# so the same app runs under `rackup` and puma once the Gemfile can list them.
require "socket"
require "stringio"

$stdout.sync = true

# Evaluates config.ru the way Rack::Builder does, for the one verb this app uses.
class ConfigRu
  def self.load(path)
    builder = new
    builder.instance_eval(File.read(path), path)
    builder.app or raise "#{path} does not `run` an application"
  end

  attr_reader :app

  def run(app)
    @app = app
  end

  def use(*)
    raise "config.ru uses middleware: add the rack gem and serve it with rackup"
  end
end

def read_request(client, port)
  request_line = client.gets or return nil
  method, target, version = request_line.split(" ", 3)
  path, query = target.to_s.split("?", 2)
  env = {
    "REQUEST_METHOD" => method, "PATH_INFO" => path, "QUERY_STRING" => query.to_s,
    "SERVER_NAME" => "0.0.0.0", "SERVER_PORT" => port.to_s, "SERVER_PROTOCOL" => version.to_s.strip,
    "SCRIPT_NAME" => "", "rack.url_scheme" => "http"
  }
  while (line = client.gets) && line != "\r\n" && line != "\n"
    name, value = line.split(":", 2)
    key = name.strip.upcase.tr("-", "_")
    key = "HTTP_#{key}" unless %w[CONTENT_TYPE CONTENT_LENGTH].include?(key)
    env[key] = value.to_s.strip
  end
  env["rack.input"] = StringIO.new(client.read(env["CONTENT_LENGTH"].to_i))
  env
end

def respond(client, status, headers, body)
  chunks = []
  body.each { |chunk| chunks << chunk }
  payload = chunks.join
  client.write "HTTP/1.1 #{status} #{status == 200 ? "OK" : "Status"}\r\n"
  headers.each { |name, value| client.write "#{name}: #{value}\r\n" }
  client.write "content-length: #{payload.bytesize}\r\nconnection: close\r\n\r\n"
  client.write payload
ensure
  body.close if body.respond_to?(:close)
end

app = ConfigRu.load(File.join(__dir__, "config.ru"))
port = Integer(ENV.fetch("PORT", "5000"))
server = TCPServer.new("0.0.0.0", port)
puts "ruby-rack: listening on #{port}"
loop do
  client = server.accept
  Thread.new(client) do |connection|
    env = read_request(connection, port)
    respond(connection, *app.call(env)) if env
  rescue StandardError => e
    warn "ruby-rack: #{e.class}: #{e.message}"
  ensure
    connection.close
  end
end
