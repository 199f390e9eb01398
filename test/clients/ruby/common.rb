# Shared reporting for the Ruby programs of pgtenant's client matrix
# (../README.md): the PGT_* environment, operations preceded by the marker
# statement, the JSON report.
require 'json'
require 'bigdecimal'

module Clients
  ENV_ = {
    host: ENV.fetch('PGT_HOST', '127.0.0.1'), port: ENV.fetch('PGT_PORT', '5432').to_i, db: ENV.fetch('PGT_DB', 'app'),
    user: ENV.fetch('PGT_USER', 'tester'), password: ENV.fetch('PGT_PASSWORD', ''), url: ENV.fetch('PGT_URL', ''),
    mode: ENV.fetch('PGT_MODE', 'deny'), tenant: ENV.fetch('PGT_TENANT', '42').to_i, other: ENV.fetch('PGT_OTHER', '7').to_i
  }.freeze

  def self.sqlstate(e)
    x = e
    5.times do
      break if x.nil?
      if x.respond_to?(:result) && x.result.respond_to?(:error_field)
        s = x.result.error_field(PG::Result::PG_DIAG_SQLSTATE) rescue nil
        return s if s
      end
      x = (x.respond_to?(:wrapped_exception) && x.wrapped_exception) || x.cause
    end
    ''
  end

  def self.plain(v)
    case v
    when BigDecimal then v.to_s('F').sub(/\.0\z/, '')
    when Hash then v.to_h { |k, x| [k.to_s, plain(x)] }
    when Array then v.map { |x| plain(x) }
    when Integer, Float, String, true, false, nil then v
    else v.to_s
    end
  end

  class Report
    attr_accessor :mark

    def initialize(client, version)
      @client, @version, @ops, @mark = client, version, [], nil
    end

    def op(name, kind, sql: '')
      if @mark
        begin
          @mark.call("SELECT 'pgtenant-op:#{name}'")
        rescue StandardError => e
          warn "marker #{name}: #{e}"
        end
      end
      rec = { name: name, kind: kind, ok: true, sqlstate: '', error: '', rows: nil, sql: sql }
      begin
        rec[:rows] = Clients.plain(yield)
      rescue StandardError => e
        rec.merge!(ok: false, sqlstate: Clients.sqlstate(e), error: e.message.to_s[0, 500])
        warn "op #{name}: #{e.class}: #{e.message}\n#{e.backtrace.first(5).join("\n")}"
      end
      @ops << rec
      rec
    end

    def dump
      puts JSON.generate(client: @client, version: @version, ops: @ops)
    end
  end
end
