# The application, Rack-style: call(env) answers [status, headers, body].
class HelloApp
  GREETING = "Hello from Ruby on waka!"

  def call(env)
    $stdout.puts "ruby-rack: served #{env["PATH_INFO"]}"
    body = "#{GREETING} Ruby #{RUBY_VERSION}, RACK_ENV=#{ENV.fetch("RACK_ENV", "none")}\n"
    [200, { "content-type" => "text/plain; charset=utf-8" }, [body]]
  end
end
