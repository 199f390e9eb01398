SET LOCAL search_path TO public; SELECT set_config('application_name', 'x', false), current_setting('app.current_account_id')::bigint; DEALLOCATE ALL; COPY (SELECT 1) TO STDOUT
